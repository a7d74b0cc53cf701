"""Sort by length and cut into sub-batches under a token budget; restore input order."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def token_budget_batches(lengths: list[int], max_batch_tokens: int, max_rows: int = 0
                         ) -> Iterator[list[int]]:
    """Index lists, longest inputs first, each with ``rows * longest <= max_batch_tokens``
    (a single longer input still gets its own batch)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    current: list[int] = []
    for index in order:
        width = lengths[current[0]] if current else lengths[index]
        full = (len(current) + 1) * width > max_batch_tokens or (max_rows and
                                                                  len(current) >= max_rows)
        if current and full:
            yield current
            current = []
        current.append(index)
    if current:
        yield current


def pad_batch(sequences: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad to ``(rows, longest)`` int64 ids and a 1/0 mask."""
    width = max(len(seq) for seq in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask
