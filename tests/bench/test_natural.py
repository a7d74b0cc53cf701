"""Setting 2 harness (bundled Transformer on the test split) runs end to end on 3 sentences
(figures: ``python -m bench.natural``, docs/performance.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.natural import SYSTEMS, main
from tests.conftest import REPO, read_jsonl

BUNDLE = REPO / "models" / "transformer-en-fr"
DATA = REPO / "tests" / "data" / "en-fr-test-slice.jsonl"
NEEDED = [DATA, BUNDLE / "model.json", BUNDLE / "int8" / "model.json",
          BUNDLE / "weights" / "model.safetensors"]


@pytest.mark.skipif(not all(p.is_file() for p in NEEDED),
                    reason="needs data/en-fr/test.jsonl and the transformer-en-fr bundle")
def test_natural_harness_runs_every_system(tmp_path: Path) -> None:
    out = tmp_path / "rows.jsonl"
    assert main(["--bundle", str(BUNDLE), "--weights", str(BUNDLE / "weights"),
                 "--data", str(DATA), "--limit", "3", "--repeats", "1",
                 "--out", str(out)]) == 0
    rows = read_jsonl(out)
    systems, summary = rows[:-1], rows[-1]
    assert [r["system"] for r in systems] == SYSTEMS
    for row in systems:
        assert row["sentences"] == 3 and row["beam"] == 4 and row["threads"] == 2
        assert row["seconds"] > 0 and row["sentences_per_s"] > 0
        assert row["target_tokens"] > 0 and row["target_tokens_per_s"] > 0
        assert row["bleu"] >= 0 and row["chrf"] >= 0
        assert isinstance(row["bleu_diff_vs_engine_fp32"], float | int)
        assert set(row["versions"]) == {"onnxruntime", "ctranslate2", "torch", "transformers"}
    by = {r["system"]: r for r in systems}
    # same weights, same search semantics: generate reproduces the fp32 engine
    assert by["generate"]["same_text_as_engine_fp32"] == 1.0
    assert summary["system"] == "summary"
    assert set(summary["ratios"]) == {"fp32 / ct2-float32", "fp32 / generate",
                                      "int8 / ct2-int8", "fp32-es / ct2-float32",
                                      "int8-es / ct2-int8"}
    assert isinstance(summary["bleu_within_tolerance"], bool)
