"""Checkpoint averaging: the trainer keeps the last snapshots, ``training.average`` writes
their mean and scores it beside the best checkpoint on dev, the card says which was packaged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import tiny_overrides
from training.average import AVERAGED, REPORT, average_weights
from training.average import main as average_main
from training.checkpoint import save_model_dir, snapshots
from training.errors import run_cli
from training.models import ModelConfig, build_model
from training.package import weights_line
from training.train import main as train_main


@pytest.fixture(scope="module")
def run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run of 8 steps, evaluated every 2, keeping the last 3 snapshots."""
    out = tmp_path_factory.mktemp("averaged") / "run"
    assert train_main([*tiny_overrides(tiny_data, out), "max_steps=8", "eval_every=2",
                       "keep_last=3"]) == 0
    return out


def test_the_trainer_keeps_the_last_snapshots(run: Path) -> None:
    assert [p.name for p in snapshots(run)] == ["step-0000004", "step-0000006", "step-0000008"]
    meta = json.loads((snapshots(run)[-1] / "model_config.json").read_text())
    assert meta["step"] == 8 and "dev_bleu_greedy" in meta


def test_average_is_the_element_wise_mean(tmp_path: Path) -> None:
    cfg = ModelConfig(arch="gru", vocab_size=40, d_model=8, layers=1, hidden_size=4,
                      max_positions=16, dropout=0.0)
    dirs = []
    for value in (1.0, 2.0, 6.0):
        model = build_model(cfg)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.fill_(value)
        dirs.append(tmp_path / str(value))
        save_model_dir(model, cfg, dirs[-1])
    averaged, averaged_cfg = average_weights(dirs)
    assert averaged_cfg == cfg
    for name, tensor in averaged.state_dict().items():
        assert torch.all(tensor == 3.0), name


def test_cli_writes_the_average_and_scores_it_beside_the_best(run: Path) -> None:
    assert average_main([str(run), "--last", "2", "--dev-size", "8"]) == 0
    report = json.loads((run / AVERAGED / REPORT).read_text())
    assert report["steps"] == [6, 8] and report["dev_size"] == 8
    assert set(report["dev_bleu_greedy"]) == {"best", AVERAGED}
    got = load_file(str(run / AVERAGED / "model.safetensors"))
    parts = [load_file(str(d / "model.safetensors")) for d in snapshots(run)[-2:]]
    for name, tensor in got.items():
        torch.testing.assert_close(tensor, (parts[0][name] + parts[1][name]) / 2)
    assert (run / AVERAGED / "tokenizer.json").is_file()
    line = weights_line(run / AVERAGED)
    assert "last 2 evaluations (steps 6-8" in line and "on 8 dev verses" in line
    assert weights_line(run / "best") == "the checkpoint with the best dev BLEU."


def test_a_run_without_snapshots_is_refused_in_one_line(tiny_data: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    out = tmp_path / "plain"
    assert train_main([*tiny_overrides(tiny_data, out), "max_steps=2", "eval_every=2"]) == 0
    assert run_cli(average_main, [str(out)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "train with keep_last=N" in errors[0]
    assert not (out / AVERAGED).exists()
