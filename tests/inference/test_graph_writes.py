"""In-place caches the graph writes itself (``StateSpec.graph_writes``): the engine binds each
present output to its input's buffer, so a step writes the new entries into the buffers the
state already holds, at each row's length, and grows a full buffer before the call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference import Translator
from inference.batching import pad_batch
from inference.kv_cache import KVCache
from inference.memory import BIND_MIN_ROWS


def encoded(bundle: Path, lengths: list[int], max_length: int) -> tuple[Translator, KVCache]:
    translator = Translator.load(bundle)
    rng = np.random.default_rng(0)
    ids, mask = pad_batch([[*rng.integers(4, 250, n).tolist(), 1] for n in lengths], 0)
    return translator, translator.model.encode(ids, mask, max_length=max_length)


@pytest.mark.parametrize("rows", [3, BIND_MIN_ROWS + 1])
def test_a_step_writes_the_new_entries_at_each_rows_length(transformer_bundle: Path,
                                                           rows: int) -> None:
    # from BIND_MIN_ROWS rows on into the state's own buffers (IO binding), below that into
    # ONNX Runtime's copy of them (a plain run)
    lengths = [5, 9, 3, 7, 2, 6, 4, 8, 5, 3][:rows]
    translator, state = encoded(transformer_bundle, lengths, max_length=40)
    model = translator.model
    assert model.manifest.decoder.graph_writes
    name = next(iter(model.layout.kv))
    tokens = np.zeros(rows, dtype=np.int64)
    for step in range(3):
        buffer = state.carried[name]
        before = buffer.copy()
        _, state = model.step_top_k(tokens, state, 2)
        after = state.carried[name]
        assert np.shares_memory(after, buffer) == (rows >= BIND_MIN_ROWS)
        np.testing.assert_array_equal(after[:, :, :step], before[:, :, :step])
        assert (after[:, :, step] != 0).any() and not (before[:, :, step] != 0).any()
        assert state.cache_mask is not None
        assert state.cache_mask.sum(axis=1).tolist() == [step + 1] * rows


def test_a_full_buffer_grows_before_the_step(transformer_bundle: Path) -> None:
    translator, state = encoded(transformer_bundle, [4, 6] * BIND_MIN_ROWS, max_length=2)
    model = translator.model
    assert state.cache_mask is not None
    capacity = state.cache_mask.shape[1]
    rows = 2 * BIND_MIN_ROWS
    tokens = np.zeros(rows, dtype=np.int64)
    for _ in range(capacity):
        _, state = model.step_top_k(tokens, state, 1)
    assert cache_mask(state).sum(axis=1).tolist() == [capacity] * rows  # no free column left
    _, state = model.step_top_k(tokens, state, 1)
    assert cache_mask(state).shape[1] > capacity
    assert state.carried["past_key_0"].shape[2] == cache_mask(state).shape[1]
    assert cache_mask(state).sum(axis=1).tolist() == [capacity + 1] * rows


def cache_mask(state: KVCache) -> np.ndarray:
    assert state.cache_mask is not None
    return state.cache_mask


def test_results_equal_those_of_one_row_at_a_time(transformer_bundle: Path) -> None:
    # bound steps (beam 4 x 3 inputs) against plain ones (one input's 4 beams)
    translator = Translator.load(transformer_bundle)
    texts = ["the cat sat .", "a dog ran away from the old house .", "hello"]
    together = translator.translate(texts, beam_size=4, max_length=30)
    alone = [translator.translate([text], beam_size=4, max_length=30)[0] for text in texts]
    assert [r.text for r in together] == [r.text for r in alone]


def test_binding_needs_no_onnx_package(transformer_bundle: Path) -> None:
    # the serving install has onnxruntime but not onnx: a graph-writing bundle's ``k`` has no
    # initializer, so nothing has to be stripped from the graph before binding
    script = (
        "import sys; sys.modules['onnx'] = None\n"
        "from inference import Translator\n"
        f"translator = Translator.load({str(transformer_bundle)!r})\n"
        "assert translator.model.bound\n"
        "print(len(translator.translate(['the cat sat .'] * 9, beam_size=2)))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=False, cwd=Path(__file__).parents[3])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "9"
