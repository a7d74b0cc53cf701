"""Encoding in groups of similar lengths gives the state one padded call gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference import Translator
from inference.batching import pad_batch


@pytest.mark.parametrize("fixture", ["transformer_bundle", "lstm_bundle"])
def test_grouped_encoding_equals_one_call(fixture: str, request: pytest.FixtureRequest) -> None:
    bundle: Path = request.getfixturevalue(fixture)
    model = Translator.load(bundle).model
    rng = np.random.default_rng(1)
    sources = [[*rng.integers(4, 250, int(n)).tolist(), 1] for n in rng.integers(1, 30, 21)]
    ids, mask = pad_batch(sources, 0)  # input order, not sorted by length
    one = model.encode(ids, mask, rows_per_call=len(ids))
    grouped = model.encode(ids, mask, rows_per_call=4)
    assert (grouped.mask == one.mask).all()
    for name, value in one.static.items():
        axis = model.layout.src_axes[name]
        real = np.expand_dims(mask, tuple(a for a in range(value.ndim) if a not in (0, axis)))
        assert grouped.static[name].shape == value.shape
        np.testing.assert_allclose(grouped.static[name] * real, value * real, atol=1e-5)
    assert one.carried.keys() == grouped.carried.keys()
    for name, value in one.carried.items():
        np.testing.assert_allclose(grouped.carried[name], value, atol=1e-5)
