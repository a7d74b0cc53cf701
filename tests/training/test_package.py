"""Packaging a run into models/NAME: bundles, fp16 weights, evaluations and a model card."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from inference.bundle import load_bundle_manifest
from tests.training.scoring import split_bleu
from training.history import HISTORY, Point, read_history, write_history
from training.package import main


def test_package_writes_bundles_weights_scores_and_card(trained_bundle: Path, tiny_data: Path,
                                                        tmp_path: Path) -> None:
    run = trained_bundle.parent / "run"
    earlier = tmp_path / "earlier"  # the model this run continued (init_from=earlier/weights)
    earlier.mkdir()
    write_history(earlier / HISTORY, [Point(1, 100, 5000, 1.5), Point(1, 200, 9000, 2.5)])
    (run / "config.yaml").write_text(yaml.safe_dump({
        "data": str(tiny_data), "model": {"arch": "transformer"},
        "init_from": str(earlier / "weights")}))
    code = main([str(run), "tiny-en-fr", "--models", str(tmp_path), "--src-version", "en",
                 "--ref-version", "fr", "--multi-refs", "fr"])
    assert code == 0
    out = tmp_path / "tiny-en-fr"
    for bundle, dtype in ((out, "float32"), (out / "int8", "int8")):
        manifest = load_bundle_manifest(bundle)
        assert manifest.dtype == dtype
        recorded = manifest.metadata["evaluation"]["beam4"]["bleu"]  # this bundle's own score
        assert recorded == split_bleu(bundle, tiny_data, beam=4), dtype
    weights = json.loads((out / "weights" / "model_config.json").read_text())
    assert weights["weights_dtype"] == "float16" and weights["src_lang"] == "en"
    card = (out / "README.md").read_text()
    assert "| int8 | beam4 |" in card and "nrefs:1" in card
    dev = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
           if '"dev"' in line]
    assert dev
    assert read_history(out / HISTORY) == [
        Point(1, 100, 5000, 1.5), Point(1, 200, 9000, 2.5),
        *(Point(2, 200 + r["step"], 9000 + r["target_tokens"], r["bleu"]) for r in dev)]
    assert (out / "curve.png").stat().st_size > 0
    assert "![learning curve](curve.png)" in card and "| 2 | " in card
