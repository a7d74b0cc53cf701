"""Beams that share their input's encoder outputs (``DecoderContract.grouped_static``) decode
exactly like beams that each hold a copy of them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference import Translator
from inference.batching import pad_batch
from inference.bundle import read_manifest
from inference.options import DecodeOptions
from tests.conftest import synthetic_pairs

SENTENCES = [src for src, _ in synthetic_pairs(10, seed=11)] + ["fish.", "the the the"]


def rows_per_call(translator: Translator) -> list[tuple[int, int]]:
    """Spy on the decoder calls: (step rows, mask rows) of every call."""
    calls: list[tuple[int, int]] = []
    model = translator.model
    run = model._run

    def spy(tokens: np.ndarray, state: Any, *args: Any) -> Any:
        calls.append((len(tokens), len(state.mask)))
        return run(tokens, state, *args)

    model._run = spy  # type: ignore[method-assign, assignment]
    return calls


Results = list[list[tuple[list[int], float]]]


def search(translator: Translator, beam: int, inputs: list[int]) -> Results:
    """Beam search over the given sentences in that order (no sorting by length), input ``i``
    capped at ``i + 3`` tokens: in one batch the first inputs finish first and their rows are
    refilled from the end of the batch."""
    sources = [translator.tokenizer(SENTENCES[i])["input_ids"] for i in inputs]
    ids, mask = pad_batch(sources, translator.manifest.special_tokens["pad"])
    max_length = np.array(inputs, dtype=np.int64) + 3
    options = DecodeOptions(beam_size=beam, num_hypotheses=2)
    results = translator._search_batch(ids, mask, max_length, options)
    return [[(h.tokens, h.score) for h in row] for row in results]


def assert_same(got: Results, expected: Results) -> None:
    assert [[tokens for tokens, _ in row] for row in got] == [
        [tokens for tokens, _ in row] for row in expected]
    assert [s for row in got for _, s in row] == pytest.approx(
        [s for row in expected for _, s in row], abs=1e-5)


@pytest.mark.parametrize("beam", [2, 4])
def test_shared_encoder_outputs_give_each_inputs_alone_result(trained_bundle: Path, beam: int
                                                              ) -> None:
    assert read_manifest(trained_bundle).decoder.grouped_static
    shared, copied = Translator.load(trained_bundle), Translator.load(trained_bundle)
    copied.model.layout = replace(copied.model.layout, grouped=False)
    everyone = list(range(len(SENTENCES)))
    calls = rows_per_call(shared)
    got = search(shared, beam, everyone)
    # the beams did share: after the first step, one mask row per input, ``beam`` step rows
    assert all(rows == beam * mask for rows, mask in calls[1:])
    assert len({rows for rows, _ in calls}) > 2  # inputs finished at different steps
    assert_same(got, search(copied, beam, everyone))
    assert_same(got, [search(copied, beam, [i])[0] for i in everyone])


def test_rnn_bundles_keep_per_row_encoder_outputs(lstm_bundle: Path) -> None:
    assert not read_manifest(lstm_bundle).decoder.grouped_static
