"""Evaluation of a (tiny) trained model produces a complete report."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import tiny_overrides
from tests.training.scoring import split_bleu
from training.config import load_config
from training.evaluate import main
from training.train import Trainer


def test_report_has_single_and_multi_reference_scores(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    Trainer(load_config(None, [*tiny_overrides(tiny_data, run), "max_steps=10",
                               "eval_every=10"])).run()
    report_path = tmp_path / "report.json"
    code = main(["--model", str(run / "best"), "--data", str(tiny_data), "--src-version", "en",
                 "--ref-version", "fr", "--multi-refs", "fr", "--beams", "1,2",
                 "--out", str(report_path)])
    assert code == 0
    report = json.loads(report_path.read_text())
    for beam in ("beam1", "beam2"):
        single = report[beam]["single_reference"]
        assert single["sentences"] == 8
        assert single["bleu_signature"].startswith("nrefs:1|")
        assert 0 <= single["chrf"] <= 100 and 0 <= single["rouge_l"] <= 100


def test_bundle_evaluation_uses_the_onnx_engine(trained_bundle: Path, tiny_data: Path,
                                                tmp_path: Path) -> None:
    common = ["--data", str(tiny_data), "--src-version", "en", "--ref-version", "fr",
              "--multi-refs", "fr", "--beams", "1,3", "--max-length", "20"]
    assert main(["--bundle", str(trained_bundle), *common, "--out", str(tmp_path / "o")]) == 0
    model_dir = trained_bundle.parent / "run" / "best"
    assert main(["--model", str(model_dir), *common, "--out", str(tmp_path / "t")]) == 0
    onnx, torch = (json.loads((tmp_path / name).read_text()) for name in ("o", "t"))
    assert (onnx["runtime"], torch["runtime"]) == ("onnxruntime", "torch")
    for beam in ("beam1", "beam3"):  # same weights, same search semantics: same translations
        assert onnx[beam]["examples"] == torch[beam]["examples"]
        scores = (onnx[beam]["single_reference"]["bleu"], torch[beam]["single_reference"]["bleu"])
        assert scores == (split_bleu(trained_bundle, tiny_data, beam=int(beam[4:]),
                                     max_length=20),) * 2  # and the figure is the real one
