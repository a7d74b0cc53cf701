"""Packaging a run into models/NAME: bundles, fp16 weights, evaluations and a model card."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from inference.bundle import load_bundle_manifest
from tests.training.scoring import split_bleu
from training.package import main


def test_package_writes_bundles_weights_scores_and_card(trained_bundle: Path, tiny_data: Path,
                                                        tmp_path: Path) -> None:
    run = trained_bundle.parent / "run"
    (run / "config.yaml").write_text(yaml.safe_dump({"data": str(tiny_data),
                                                     "model": {"arch": "transformer"}}))
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
