"""Deterministic leakage-free split by whole chapters (or by line for user data)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

Split = Literal["train", "dev", "test"]
SPLIT_RULE = {"period": 30, "test": 9, "dev": 21}
SPLIT_DESCRIPTION = (
    "chapters numbered 0..1188 in canonical order (line numbers for user data): "
    "test if index % 30 == 9, dev if index % 30 == 21, else train; training pairs whose "
    "source or target text equals a dev/test text are dropped"
)


def split_of(index: int) -> Split:
    """Which split a chapter (or line) index belongs to."""
    rest = index % SPLIT_RULE["period"]
    if rest == SPLIT_RULE["test"]:
        return "test"
    if rest == SPLIT_RULE["dev"]:
        return "dev"
    return "train"


def held_out_texts(pairs: Iterable[tuple[str, str]]) -> tuple[set[str], set[str]]:
    """Source and target strings of dev/test pairs, for removing them from train."""
    sources: set[str] = set()
    targets: set[str] = set()
    for src, tgt in pairs:
        sources.add(src)
        targets.add(tgt)
    return sources, targets
