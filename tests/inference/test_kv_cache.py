"""The KV-cache object: growth, reorder, joining and leaving rows, the same in host memory
(numpy) and in ONNX Runtime values bound with IO binding (CPU ``OrtValue`` s here).

A fake step stands in for the decoder graph: it writes one value per row at the row's length
(as ``GroupQueryAttention`` does) and advances the position; every check compares the state,
read back row by row in the search's order, with plain Python lists."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from inference.kv_cache import (
    COLUMN_STEP,
    FIRST_COLUMNS,
    CacheLayout,
    KVCache,
    first_capacity,
    new_origin,
)
from inference.memory import HostMemory, OrtMemory

LAYOUT = CacheLayout(kv={"past_key": 2}, cache_mask="past_mask", src_axes={"cross": 1},
                     grouped=True, max_columns=200)
Row = tuple[list[float], int, list[float]]  # entries, position, its static row's source


@pytest.fixture(params=["host", "ortvalue"])
def memory(request: pytest.FixtureRequest) -> Any:
    if request.param == "host":
        return HostMemory()
    return OrtMemory("cpu", ["CPUExecutionProvider"], 1)


def encoded(memory: Any, sources: list[list[float]], max_length: int = 40) -> KVCache:
    """A fresh state of one row per source (source values become its static row)."""
    rows, width = len(sources), max(len(s) for s in sources)
    mask = np.zeros((rows, width), dtype=np.int64)
    cross = np.zeros((rows, width, 2), dtype=np.float32)
    for row, source in enumerate(sources):
        mask[row, : len(source)] = 1
        cross[row, : len(source), 0] = source
    columns = first_capacity(max_length)
    carried = {"past_key": np.zeros((rows, 2, columns, 3), np.float32),
               "position": np.zeros(rows, np.int64)}
    return KVCache(LAYOUT, memory, mask, {"cross": memory.upload(cross)},
                   {name: memory.upload(value) for name, value in carried.items()},
                   np.zeros((rows, columns), np.int64), new_origin(rows))


def fake_step(state: KVCache, values: list[float]) -> None:
    """What a decoder step does to the state: ``values[i]`` (search row ``i``) written at
    each row's length into the key buffer, the position advanced."""
    state.make_room()
    assert state.cache_mask is not None
    memory = state.memory
    key = memory.download(state.carried["past_key"]).copy()
    placed = np.empty(state.rows, dtype=np.float32)
    placed[np.arange(state.rows) if state.order is None else state.order] = values
    filled = state.cache_mask.sum(axis=1)
    key[np.arange(state.rows), :, filled] = placed[:, None, None]
    position = memory.download(state.carried["position"]) + 1
    state.advance({"past_key": memory.upload(key), "position": memory.upload(position)})


def rows_of(state: KVCache) -> list[Row]:
    """Each search row's cache entries, position and static source, in the search's order."""
    assert state.cache_mask is not None
    memory = state.memory
    key = memory.download(state.carried["past_key"])
    position = memory.download(state.carried["position"])
    cross = memory.download(state.static["cross"])
    out = []
    for row in range(state.rows):
        at = row if state.order is None else int(state.order[row])
        used = int(state.cache_mask[at].sum())
        assert state.cache_mask[at, :used].all() and not state.cache_mask[at, used:].any()
        static = at // state.group
        width = int(state.mask[static].sum())
        assert not state.mask[static, width:].any() and not cross[static, width:].any()
        out.append((key[at, 0, :used, 0].tolist(), int(position[at]),
                    cross[static, :width, 0].tolist()))
    return out


def test_a_full_buffer_grows_by_a_step_and_keeps_its_entries(memory: Any) -> None:
    state = encoded(memory, [[1.0], [2.0, 3.0]], max_length=4)
    assert state.cache_mask is not None and state.cache_mask.shape[1] == COLUMN_STEP
    for step in range(COLUMN_STEP + 1):
        fake_step(state, [step, -step])
    assert state.cache_mask.shape[1] == 2 * COLUMN_STEP
    assert memory.shape(state.carried["past_key"])[2] == 2 * COLUMN_STEP
    steps = list(range(COLUMN_STEP + 1))
    assert rows_of(state) == [([float(s) for s in steps], COLUMN_STEP + 1, [1.0]),
                              ([-float(s) for s in steps], COLUMN_STEP + 1, [2.0, 3.0])]


def test_beams_expand_reorder_and_share_their_inputs_static_row(memory: Any) -> None:
    sources = [[1.0], [2.0, 2.5], [3.0]]
    state = encoded(memory, sources)
    fake_step(state, [10, 20, 30])
    state = state.reorder(np.repeat(np.arange(3), 2))  # two beams per input
    assert state.group == 2 and len(state.origin) == 3  # one static row per input
    fake_step(state, [11, 12, 21, 22, 31, 32])
    want = rows_of(state)
    index = np.array([1, 1, 3, 2, 5, 4])  # beams swap within their inputs
    state = state.reorder(index)
    assert rows_of(state) == [want[i] for i in index]
    fake_step(state, [0, 1, 2, 3, 4, 5])
    assert [row[0][-1] for row in rows_of(state)] == [0, 1, 2, 3, 4, 5]
    assert [row[2] for row in rows_of(state)] == [s for s in sources for _ in range(2)]


def test_finished_inputs_leave_and_the_rest_keep_their_rows(memory: Any) -> None:
    state = encoded(memory, [[1.0], [2.0] * 9, [3.0], [4.0, 4.0]])
    state = state.reorder(np.repeat(np.arange(4), 2))
    for step in range(3):
        fake_step(state, [step * 10 + row for row in range(8)])
    want = rows_of(state)
    index = np.array([6, 7, 0, 0])  # inputs 1 and 2 finished; input 3 continues first
    state = state.reorder(index)
    assert rows_of(state) == [want[i] for i in index]
    state.trim()  # the long source left: the source axis is cut to what is used
    assert state.mask.shape[1] == 2 and memory.shape(state.static["cross"])[1] == 2
    assert rows_of(state) == [want[i] for i in index]


def test_joining_rows_start_empty_behind_the_running_ones(memory: Any) -> None:
    running = encoded(memory, [[1.0, 1.5], [2.0]])
    running = running.reorder(np.repeat(np.arange(2), 2))
    for step in range(FIRST_COLUMNS + 1):  # one growth
        fake_step(running, [step, step + 0.5, -step, -step - 0.5])
    running = running.reorder(np.array([1, 0, 2, 2]))  # rows moved before the join
    before = rows_of(running)
    joining = encoded(memory, [[5.0, 5.0, 5.0]], max_length=2)  # wider source, fewer columns
    joining = joining.reorder(np.repeat(np.arange(1), 2))
    state = running.join(joining)
    assert rows_of(state) == [*before, ([], 0, [5.0, 5.0, 5.0]), ([], 0, [5.0, 5.0, 5.0])]
    fake_step(state, [7, 7, 7, 7, 8, 9])
    after = rows_of(state)
    assert [row[0] for row in after[4:]] == [[8.0], [9.0]]
    assert [row[0][:-1] for row in after[:4]] == [row[0] for row in before]
    state = state.reorder(np.array([4, 5]))  # the running inputs finished
    state.trim()  # the long rows left: the buffers shrink to one step of columns
    assert rows_of(state) == after[4:]
    assert state.cache_mask is not None and state.cache_mask.shape[1] == COLUMN_STEP
    assert memory.shape(state.carried["past_key"])[2] == COLUMN_STEP


def test_host_reorders_move_rows_inside_their_buffers() -> None:
    state = encoded(HostMemory(), [[1.0], [2.0]])
    state = state.reorder(np.repeat(np.arange(2), 4))
    fake_step(state, list(range(8)))
    buffer = state.carried["past_key"]
    state = state.reorder(np.array([0, 0, 1, 2, 4, 5, 6, 7]))
    assert np.shares_memory(state.carried["past_key"], buffer)
    assert state.order is not None  # the copy of row 0 took the row nobody continues
