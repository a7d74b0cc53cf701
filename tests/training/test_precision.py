"""Autocast precision of training runs: bf16 only where the hardware computes in it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_overrides
from training.config import load_config
from training.errors import UserError
from training.precision import autocast_dtype, cpu_flags
from training.train import Trainer

CPU = torch.device("cpu")


def test_auto_is_bf16_only_on_cuda_and_bf16_capable_cpus() -> None:
    assert autocast_dtype("auto", CPU, frozenset({"avx2", "fma"})) is None
    assert autocast_dtype("auto", CPU, frozenset({"avx2", "avx512_bf16"})) is torch.bfloat16
    assert autocast_dtype("auto", CPU, frozenset({"amx_bf16"})) is torch.bfloat16
    assert autocast_dtype("auto", torch.device("cuda")) is torch.bfloat16
    assert autocast_dtype("fp32", torch.device("cuda")) is None
    assert autocast_dtype("bf16", CPU, frozenset()) is torch.bfloat16


def test_cpu_flags_read_the_first_processor(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16\n\nflags\t\t: other\n")
    assert cpu_flags(info) == {"fpu", "avx2", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_bf16_run_autocasts_and_learns_like_fp32(tiny_data: Path, tmp_path: Path) -> None:
    """Same batches from the same init: the bf16 loss follows the fp32 one closely."""
    losses = {}
    for precision in ("fp32", "bf16"):
        trainer = Trainer(load_config(None, [*tiny_overrides(tiny_data, tmp_path / precision),
                                             f"precision={precision}", "label_smoothing=0"]))
        assert trainer.autocast is (torch.bfloat16 if precision == "bf16" else None)
        plan = trainer._batches()[:8]
        losses[precision] = [trainer.train_step([index])[0] for index in plan]
    assert losses["bf16"] != losses["fp32"]  # autocast really changed the arithmetic
    for fp32, bf16 in zip(losses["fp32"], losses["bf16"], strict=True):
        assert bf16 == pytest.approx(fp32, rel=0.02)
    assert losses["bf16"][-1] < losses["bf16"][0]


def test_unknown_precision_is_refused(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="precision='fp8': use one of auto, fp32, bf16"):
        Trainer(load_config(None, [*tiny_overrides(tiny_data, tmp_path / "x"),
                                   "precision=fp8"]))
