"""A checkpoint's generation config (``generation_config.json``, else the same keys in
``config.json``, as older OPUS-MT checkpoints keep them) reduced to what the engine honours,
recorded as ``metadata.generation`` in ``model.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_generation_config(path: Path) -> dict[str, Any]:
    """The raw generation settings of the checkpoint directory ``path``."""
    for name in ("generation_config.json", "config.json"):
        if (path / name).is_file():
            raw = json.loads((path / name).read_text(encoding="utf-8"))
            if name == "generation_config.json" or "num_beams" in raw:
                return dict(raw)
    return {}


def generation_defaults(raw: dict[str, Any], *, eos_id: int) -> dict[str, Any]:
    """``forced_eos`` (``forced_eos_token_id`` is eos), ``banned_ids`` (the single-token
    ``bad_words_ids``), ``num_beams`` and ``max_new_tokens`` (``max_length`` counts the
    decoder start token: one more than the generated tokens)."""
    out: dict[str, Any] = {}
    if raw.get("forced_eos_token_id") == eos_id:
        out["forced_eos"] = True
    words = raw.get("bad_words_ids") or []
    singles = sorted({w[0] for w in words if isinstance(w, list) and len(w) == 1})
    if singles:
        out["banned_ids"] = singles
    if len(singles) < len(words):
        out["ignored_bad_words"] = len(words) - len(singles)  # multi-token: not applied
    if isinstance(raw.get("num_beams"), int) and raw["num_beams"] >= 1:
        out["num_beams"] = raw["num_beams"]
    if isinstance(raw.get("max_new_tokens"), int):
        out["max_new_tokens"] = raw["max_new_tokens"]
    elif isinstance(raw.get("max_length"), int) and raw["max_length"] > 1:
        out["max_new_tokens"] = raw["max_length"] - 1
    return out
