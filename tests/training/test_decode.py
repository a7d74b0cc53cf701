"""Torch reference decoding over the protocol."""

from __future__ import annotations

import pytest
import torch

from tests.training.models.test_protocol import batch, tiny
from training.decode import beam_decode, greedy_decode
from training.models import build_model
from training.models.config import Architecture


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_beam_one_equals_greedy_and_batching_does_not_matter(arch: Architecture) -> None:
    torch.manual_seed(1)
    model = build_model(tiny(arch)).eval()
    src, mask, _ = batch()
    args = {"start_id": 0, "eos_id": 1, "max_len": 12}
    greedy = greedy_decode(model, src, mask, **args)
    assert beam_decode(model, src, mask, beam=1, length_penalty=0.0, **args) == greedy
    alone = greedy_decode(model, src[2:3, :2], mask[2:3, :2], **args)
    assert alone[0] == greedy[2]


def test_beam_finds_a_sequence_at_least_as_likely_as_greedy() -> None:
    torch.manual_seed(2)
    model = build_model(tiny("transformer")).eval()
    src, mask, _ = batch()
    args = {"start_id": 0, "eos_id": 1, "max_len": 10}

    def log_prob(row: int, ids: list[int]) -> float:
        state = model.encode(src[row : row + 1], mask[row : row + 1])
        total, token = 0.0, 0
        for nxt in [*ids, 1][:10]:
            log_probs, state = model.step(torch.tensor([token]), state)
            total += log_probs[0, nxt].item()
            token = nxt
        return total

    greedy = greedy_decode(model, src, mask, **args)
    beam = beam_decode(model, src, mask, beam=4, length_penalty=0.0, **args)
    with torch.no_grad():
        for row in range(3):
            assert log_prob(row, beam[row]) >= log_prob(row, greedy[row]) - 1e-5
