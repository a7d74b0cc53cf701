"""Which autocast precision a training run uses on its device."""

from __future__ import annotations

from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
# CPU flags of native bf16 matrix arithmetic (AVX512-BF16 dot products, AMX tiles): without
# them bf16 autocast only adds conversions to fp32 work.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first processor's feature flags (empty where /proc/cpuinfo is missing)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def autocast_dtype(setting: str, device: torch.device,
                   flags: frozenset[str] | None = None) -> torch.dtype | None:
    """The autocast dtype for ``setting`` ("auto", "fp32", "bf16") on ``device``; ``None``
    means plain fp32. "auto" is bf16 on CUDA and on CPUs with native bf16 arithmetic."""
    if setting not in PRECISIONS:
        raise ValueError(f"precision={setting!r}: use one of {', '.join(PRECISIONS)}")
    if setting == "fp32":
        return None
    if setting == "bf16" or device.type == "cuda":
        return torch.bfloat16
    native = BF16_CPU_FLAGS & (cpu_flags() if flags is None else flags)
    return torch.bfloat16 if native else None
