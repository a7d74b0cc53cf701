"""Checkpoints with exact resume, and the weights-only model directory that gets committed."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from training.errors import UserError
from training.models.config import ModelConfig
from training.models.factory import Seq2SeqModule, build_model
from training.models.marian import config_of_checkpoint

CHECKPOINT = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    """Every random generator the loop touches."""
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write never leaves a corrupt checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, model_cfg: ModelConfig) -> dict[str, Any]:
    """Read a checkpoint and check it belongs to a model of this configuration."""
    try:
        payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a damaged file
        raise UserError(f"{path} is corrupt ({type(err).__name__}): delete it to start over, "
                        "or point `out` at another run") from None
    if payload.get("model_config") != dataclasses.asdict(model_cfg):
        raise UserError(f"{path} was trained with another model config: use its config.yaml, "
                        "or a new `out` directory")
    return payload


def save_model_dir(model: nn.Module, cfg: ModelConfig, directory: Path,
                   extra: dict[str, Any] | None = None, dtype: torch.dtype | None = None
                   ) -> None:
    """Weights only (safetensors, tied weights once, optionally cast to ``dtype``) plus
    ``model_config.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    seen: dict[int, str] = {}
    unique = {}
    for name, tensor in state.items():
        if tensor.data_ptr() in seen:
            continue
        seen[tensor.data_ptr()] = name
        unique[name] = tensor.to(dtype) if dtype and tensor.is_floating_point() else tensor
    save_file(unique, str(directory / "model.safetensors"))
    meta = {"model": dataclasses.asdict(cfg), **(extra or {})}
    (directory / "model_config.json").write_text(json.dumps(meta, indent=2) + "\n")


SNAPSHOTS = "snapshots"  # RUN/snapshots/step-NNNNNNN/: model directories, oldest first


def keep_snapshot(model: nn.Module, cfg: ModelConfig, run: Path, step: int, keep: int,
                  extra: dict[str, Any]) -> None:
    """Save the weights at ``step`` as ``run/snapshots/step-NNNNNNN`` and delete all but the
    newest ``keep`` snapshots."""
    root = run / SNAPSHOTS
    save_model_dir(model, cfg, root / f"step-{step:07d}", {"step": step, **extra})
    for old in snapshots(run)[:-keep]:
        shutil.rmtree(old)


def snapshots(run: Path) -> list[Path]:
    """The run's snapshot directories, oldest first."""
    root = run / SNAPSHOTS
    return sorted(p for p in root.glob("step-*") if (p / "model_config.json").is_file()
                  ) if root.is_dir() else []


def start_config(directory: Path) -> ModelConfig:
    """Model config of a fine-tuning start point: a project model directory (e.g.
    ``models/<name>/weights``) or a local MarianMT checkpoint."""
    meta = directory / "model_config.json"
    if meta.is_file():
        return ModelConfig(**json.loads(meta.read_text())["model"])
    return config_of_checkpoint(directory)


def start_model(directory: Path, cfg: ModelConfig) -> Seq2SeqModule:
    """The weights to fine-tune, in training mode."""
    if (directory / "model_config.json").is_file():
        model, _ = load_model_dir(directory)
        return model.train()
    return build_model(cfg, directory)


def load_model_dir(directory: Path) -> tuple[Seq2SeqModule, ModelConfig]:
    """Inverse of :func:`save_model_dir`; tied weights (one storage) may be stored once."""
    meta_path = directory / "model_config.json"
    if not meta_path.is_file():
        raise UserError(f"{directory} has no model_config.json: give a directory written by "
                        "`python -m training.train` (its best/ folder) or models/<name>")
    cfg = ModelConfig(**json.loads(meta_path.read_text())["model"])
    model = build_model(cfg)
    missing, unexpected = model.load_state_dict(load_file(str(directory / "model.safetensors")),
                                                strict=False)
    state = model.state_dict()
    loaded = {state[name].data_ptr() for name in state if name not in missing}
    real_missing = [m for m in missing if state[m].data_ptr() not in loaded]
    if real_missing or unexpected:
        raise UserError(f"{directory}: weights do not match the config "
                        f"(missing {real_missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    return model, cfg
