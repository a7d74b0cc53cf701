"""The training loop: it learns, resumes exactly, refuses bad input, and runs under DDP."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import tiny_overrides
from training.config import load_config
from training.errors import UserError
from training.train import Trainer


def train(overrides: list[str]) -> Trainer:
    trainer = Trainer(load_config(None, overrides))
    trainer.run()
    return trainer


def losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["kind"] == "train"}


def test_loss_falls_and_best_model_is_saved(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train([*tiny_overrides(tiny_data, run), "max_steps=100", "eval_every=50", "log_every=1",
           "label_smoothing=0"])
    curve = losses(run)
    assert curve[100] < 0.5 * curve[1]
    for name in ("model.safetensors", "model_config.json", "tokenizer.json"):
        assert (run / "best" / name).is_file()
    assert (run / "curves.png").stat().st_size > 1000


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_resume_reproduces_the_uninterrupted_run(tiny_data: Path, tmp_path: Path, arch: str
                                                 ) -> None:
    base = [*tiny_overrides(tiny_data, tmp_path / "a", arch), "eval_every=3", "log_every=1"]
    train([*base, "max_steps=6"])
    resumed = [*tiny_overrides(tiny_data, tmp_path / "b", arch), "eval_every=3", "log_every=1"]
    train([*resumed, "max_steps=3"])
    train([*resumed, "max_steps=6"])
    full, split = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert [split[s] for s in (4, 5, 6)] == [full[s] for s in (4, 5, 6)]


def test_config_typo_is_refused_with_a_suggestion() -> None:
    with pytest.raises(UserError, match="did you mean 'max_tokens'"):
        load_config(None, ["max_tokenz=10"])
    with pytest.raises(UserError, match="not a valid int"):
        load_config(None, ["max_tokens=lots"])


def test_corrupt_or_incompatible_checkpoint_is_refused(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train([*tiny_overrides(tiny_data, run), "max_steps=2", "eval_every=2"])
    changed = load_config(None, [*tiny_overrides(tiny_data, run), "model.d_model=48"])
    with pytest.raises(UserError, match="another model config"):
        Trainer(changed)
    (run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="corrupt"):
        Trainer(load_config(None, tiny_overrides(tiny_data, run)))


def test_two_process_ddp_on_gloo(tiny_data: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun comes with torch"
    run = tmp_path / "ddp"
    result = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "training.train",
         *tiny_overrides(tiny_data, run), "max_steps=4", "eval_every=4", "log_every=1"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["step"] == 4
    assert sorted(losses(run)) == [1, 2, 3, 4]


def test_fine_tuning_from_a_local_marian_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    from transformers import MarianConfig, MarianMTModel

    from training.checkpoint import load_model_dir
    from training.tokenizer import train_tokenizer

    start = tmp_path / "opus-like"
    config = MarianConfig(vocab_size=300, d_model=32, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2,
                          encoder_ffn_dim=64, decoder_ffn_dim=64, pad_token_id=0,
                          eos_token_id=1, decoder_start_token_id=0, max_position_embeddings=64)
    MarianMTModel(config).save_pretrained(str(start))
    texts = [line for line in (tiny_data / "train.jsonl").read_text().splitlines()]
    train_tokenizer(texts, vocab_size=300).save_pretrained(str(start))
    run = tmp_path / "run"
    trainer = train([*tiny_overrides(tiny_data, run), f"init_from={start}", "max_steps=4",
                     "eval_every=4", "model.d_model=999"])  # the checkpoint's sizes win
    assert trainer.cfg.model.d_model == 32 and trainer.cfg.model.layers == 1
    _, cfg = load_model_dir(run / "best")
    assert cfg.d_model == 32
    with pytest.raises(UserError, match="init_from="):
        train([*tiny_overrides(tiny_data, tmp_path / "x"), f"init_from={tmp_path / 'none'}"])


def test_continue_training_from_a_shipped_model_directory(tiny_data: Path, tmp_path: Path
                                                          ) -> None:
    first = tmp_path / "first"
    train([*tiny_overrides(tiny_data, first, "lstm"), "max_steps=30", "eval_every=30",
           "log_every=1", "label_smoothing=0"])
    again = tmp_path / "again"
    train([*tiny_overrides(tiny_data, again, "gru"), f"init_from={first / 'best'}",
           "max_steps=2", "eval_every=2", "log_every=1", "label_smoothing=0", "warmup=1"])
    trainer = train([*tiny_overrides(tiny_data, tmp_path / "third", "gru"),
                     f"init_from={first / 'best'}", "max_steps=1", "eval_every=1"])
    assert trainer.cfg.model.arch == "lstm"  # the start point's architecture wins
    assert losses(again)[1] < losses(first)[1] * 0.8  # and its weights: no fresh start
