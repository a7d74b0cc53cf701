"""Training configuration: a frozen dataclass loaded from YAML plus ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from training.errors import UserError
from training.models.config import ModelConfig


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; saved as ``config.yaml`` next to its checkpoints."""

    data: str = "data/en-fr"  # directory written by `python -m training.data prepare`
    out: str = "runs/transformer"  # run directory: checkpoints, metrics, curves, best model
    tokenizer: str = ""  # tokenizer directory; trained from the data when it does not exist
    tokenizer_algorithm: str = "bpe"
    init_from: str = ""  # weights to start from: models/<name>/weights or a MarianMT checkpoint
    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 1234
    max_tokens: int = 4000  # per batch, counting padded source + target positions
    max_len: int = 200  # drop training pairs longer than this (tokens, either side)
    accumulate: int = 1  # gradient accumulation steps
    lr: float = 1e-3
    warmup: int = 400
    weight_decay: float = 0.0001
    label_smoothing: float = 0.1
    clip_norm: float = 1.0
    max_steps: int = 100_000
    max_minutes: float = 0.0  # stop after this wall time (0 = no limit)
    eval_every: int = 500  # optimizer steps between dev evaluations and checkpoints
    log_every: int = 20  # optimizer steps between metrics-log rows
    dev_pairs: str = "k-l"  # dev version pair used for BLEU (`src-tgt` codes); "" = all
    dev_size: int = 300  # dev sentences decoded (greedy) at each evaluation
    patience: int = 10  # evaluations without a dev-BLEU gain before stopping
    keep_last: int = 0  # keep the weights of the last N evaluations (for training.average)
    threads: int = 0  # torch intra-op threads (0 = torch's default)
    precision: str = "auto"  # autocast: auto (bf16 on CUDA and bf16-capable CPUs), fp32, bf16
    compile: bool = False  # torch.compile the model for training steps
    limit_train: int = 0  # use only the first N training pairs (tests, smoke runs)


def _coerce(value: str, kind: Any) -> Any:
    """Parse a CLI override string into the field's type."""
    if kind in (int, "int"):
        return int(value)
    if kind in (float, "float"):
        return float(value)
    if kind in (bool, "bool"):
        return value.lower() in ("1", "true", "yes")
    return value


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    """Instantiate a dataclass, refusing unknown keys with a suggestion."""
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"unknown config key {where}{key!r}{hint}; see training/config.py")
    return cls(**values)


def _apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply ``a.b=value`` to the nested raw dict, typed by the dataclass fields."""
    if "=" not in override:
        raise UserError(f"override {override!r} must look like key=value, e.g. lr=0.0005")
    path, value = override.split("=", 1)
    keys = path.split(".")
    cls: Any = TrainConfig
    target = raw
    for key in keys[:-1]:
        types_ = _field_types(cls)
        if key not in types_ or not dataclasses.is_dataclass(types_[key]):
            raise UserError(f"unknown config section {key!r} in override {override!r}")
        cls = types_[key]
        target = target.setdefault(key, {})
    kind = _field_types(cls).get(keys[-1], str)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Literal:
        kind = str
    try:
        target[keys[-1]] = _coerce(value, kind)
    except ValueError:
        name = getattr(kind, "__name__", kind)
        raise UserError(f"override {override!r}: {value!r} is not a valid {name}") from None


def load_config(path: Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read YAML (optional) and apply overrides; unknown keys are errors."""
    raw: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise UserError(f"config file {path} not found: give an existing YAML file")
        raw = yaml.safe_load(path.read_text()) or {}
    for override in overrides:
        _apply_override(raw, override)
    model = _build(ModelConfig, raw.pop("model", {}) or {}, "model.")
    return typing.cast(TrainConfig, _build(TrainConfig, {**raw, "model": model}, ""))


def save_config(config: TrainConfig, path: Path) -> None:
    """Write the config as YAML."""
    path.write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))


def tokenizer_dir(config: TrainConfig) -> Path:
    """Where this run's tokenizer lives."""
    return Path(config.tokenizer) if config.tokenizer else Path(config.out) / "tokenizer"
