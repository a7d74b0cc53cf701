"""Token-based batches with length bucketing, deterministic per (seed, epoch) for exact resume."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

POOL_BATCHES = 100  # shuffle, then sort by length inside pools of about this many batches


@dataclass
class Batch:
    """Padded tensors: src ``(B, S)``, src_mask ``(B, S)``, tgt_in/tgt_out ``(B, T)``."""

    src: Tensor
    src_mask: Tensor
    tgt_in: Tensor
    tgt_out: Tensor

    @property
    def target_tokens(self) -> int:
        return int((self.tgt_out != -100).sum())


def plan_batches(src_lens: np.ndarray, tgt_lens: np.ndarray, *, max_tokens: int, seed: int,
                 epoch: int) -> list[np.ndarray]:
    """Index arrays, one per batch, so that ``n * max(len) <= max_tokens`` for each side."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(src_lens))
    longest = np.maximum(src_lens, tgt_lens)
    pool = max(1, POOL_BATCHES * max_tokens // max(1, int(np.median(longest))))
    batches: list[np.ndarray] = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.lexsort((src_lens[chunk], tgt_lens[chunk], longest[chunk]))]
        current: list[int] = []
        width = 0
        for index in chunk:
            new_width = max(width, int(longest[index]))
            if current and new_width * (len(current) + 1) > max_tokens:
                batches.append(np.array(current))
                current, new_width = [], int(longest[index])
            current.append(int(index))
            width = new_width
        if current:
            batches.append(np.array(current))
    rng.shuffle(batches)
    return batches


def collate(src: list[list[int]], tgt: list[list[int]], *, pad_id: int, start_id: int) -> Batch:
    """Pad a batch; targets are shifted right behind ``start_id``; ignored labels are -100."""
    size = len(src)
    src_len = max(map(len, src))
    tgt_len = max(map(len, tgt))
    src_ids = torch.full((size, src_len), pad_id, dtype=torch.long)
    tgt_in = torch.full((size, tgt_len), pad_id, dtype=torch.long)
    tgt_out = torch.full((size, tgt_len), -100, dtype=torch.long)
    for row, (s, t) in enumerate(zip(src, tgt, strict=True)):
        src_ids[row, : len(s)] = torch.tensor(s)
        tgt_in[row, : len(t)] = torch.tensor([start_id, *t[:-1]])
        tgt_out[row, : len(t)] = torch.tensor(t)
    src_mask = (torch.arange(src_len)[None] < torch.tensor([len(s) for s in src])[:, None]).long()
    return Batch(src_ids, src_mask, tgt_in, tgt_out)
