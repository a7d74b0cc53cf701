"""Both architectures: the step protocol agrees with teacher forcing, masks work, overfitting."""

from __future__ import annotations

import pytest
import torch

from training.models import ModelConfig, build_model
from training.models.config import Architecture

ARCHS = ["transformer", "lstm", "gru"]


def tiny(arch: Architecture, **extra: object) -> ModelConfig:
    return ModelConfig(arch=arch, vocab_size=40, d_model=32, layers=2, heads=2, ffn_dim=64,
                       hidden_size=16, max_positions=64, **extra)  # type: ignore[arg-type]


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """src (3, 7) with padding on rows 1-2, target inputs (3, 5)."""
    torch.manual_seed(0)
    src = torch.randint(4, 40, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    src[mask == 0] = 0
    return src, mask, torch.randint(4, 40, (3, 5))


@pytest.mark.parametrize("arch", ARCHS)
def test_step_by_step_equals_teacher_forcing(arch: Architecture) -> None:
    model = build_model(tiny(arch)).eval()
    src, mask, tgt = batch()
    with torch.no_grad():
        full = torch.log_softmax(model(src, mask, tgt), dim=-1)
        state = model.encode(src, mask)
        steps = []
        for t in range(tgt.size(1)):
            log_probs, state = model.step(tgt[:, t], state)
            steps.append(log_probs)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_padding_does_not_change_outputs(arch: Architecture) -> None:
    model = build_model(tiny(arch)).eval()
    src, mask, tgt = batch()
    with torch.no_grad():
        padded = model(src, mask, tgt)[2]
        alone = model(src[2:3, :2], mask[2:3, :2], tgt[2:3])[0]
    assert torch.allclose(padded, alone, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_reorder_selects_rows(arch: Architecture) -> None:
    model = build_model(tiny(arch)).eval()
    src, mask, tgt = batch()
    with torch.no_grad():
        state = model.encode(src, mask)
        _, state = model.step(tgt[:, 0], state)
        state = model.reorder(state, torch.tensor([2, 2, 0]))
        reordered, _ = model.step(tgt[[2, 2, 0], 1], state)
        state = model.encode(src, mask)
        _, state = model.step(tgt[:, 0], state)
        direct, _ = model.step(tgt[:, 1], state)
    assert torch.allclose(reordered, direct[[2, 2, 0]], atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_overfits_a_tiny_batch(arch: Architecture) -> None:
    torch.manual_seed(0)
    model = build_model(tiny(arch, dropout=0.0))
    src, mask, tgt = batch()
    labels = tgt.clone()
    tgt_in = torch.cat([torch.zeros(3, 1, dtype=torch.long), tgt[:, :-1]], dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(120):
        loss = torch.nn.functional.cross_entropy(model(src, mask, tgt_in).reshape(-1, 40),
                                                 labels.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
