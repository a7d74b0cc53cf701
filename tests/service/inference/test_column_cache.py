"""In-place caches: rows placed so that few move, moved rows equal a plain gather, new
entries written at each row's next free column, buffers reused for joining rows."""

from __future__ import annotations

import numpy as np
import pytest

from service.bundle import StateSpec
from service.inference import column_cache
from service.inference.column_cache import ColumnWriter, append_rows, move_rows, place_rows

KEY = StateSpec("past_key_0", "new_key_0", "float32", ["batch", 2, "cache_len", 3], "empty",
                grow_axis=2, in_place=True)
MASK = StateSpec("past_mask", "new_mask", "int64", ["batch", "cache_len"], "empty",
                 grow_axis=1, in_place=True)
POSITION = StateSpec("position", "next_position", "int64", ["batch"], "empty")


def test_a_beams_first_child_stays_and_others_take_rows_nobody_continues() -> None:
    parents = np.array([0, 0, 1, 2, 4, 5, 6, 7])
    order, source = place_rows(parents, 4)
    assert order.tolist() == [0, 3, 1, 2, 4, 5, 6, 7]
    assert source.tolist() == [0, 1, 2, 0, 4, 5, 6, 7]  # one row copied (0 into 3)


def test_a_finished_inputs_block_is_filled_by_one_from_the_end() -> None:
    parents = np.array([8, 9, 10, 11, 4, 4, 5, 6])  # input 0 (block 0) finished
    order, source = place_rows(parents, 4)
    assert order.tolist() == [0, 1, 2, 3, 4, 7, 5, 6]
    assert source.tolist() == [8, 9, 10, 11, 4, 5, 6, 4]


@pytest.mark.parametrize("group", [1, 2, 4])
def test_moving_rows_in_place_equals_a_gather(group: int) -> None:
    rng = np.random.default_rng(group)
    for _ in range(30):
        old_groups = int(rng.integers(1, 7))
        kept = np.sort(rng.choice(old_groups, int(rng.integers(1, old_groups + 1)),
                                  replace=False))
        parents = (kept[:, None] * group + rng.integers(0, group, (len(kept), group))
                   ).reshape(-1)
        buffer = rng.normal(size=(old_groups * group + 3, 2, 5, 3)).astype(np.float32)
        rows = buffer[: old_groups * group]
        expected = rows[parents].copy()
        order, source = place_rows(parents, group)
        moved = move_rows(rows, source)
        assert np.shares_memory(moved, buffer)  # no new buffer
        np.testing.assert_array_equal(moved[order], expected)
        assert (source != np.arange(len(source))).sum() <= (parents != np.arange(
            len(parents))).sum()


def test_only_used_entries_are_copied() -> None:
    rows = np.arange(4 * 4, dtype=np.float32).reshape(4, 4)
    moved = move_rows(rows, np.array([2, 1, 2, 1]), axis=1, lengths=np.array([4, 3, 2, 1]))
    assert moved.tolist() == [[8, 9, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [4, 5, 6, 15]]


def test_expanding_rows_copies_the_used_entries_into_a_new_buffer() -> None:
    # one row per input -> two per input (a beam's first expansion): more rows than the buffer
    rows = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5) + 1
    moved = move_rows(rows, np.array([0, 0, 1, 1]), axis=2, lengths=np.array([2, 1]))
    assert moved.shape == (4, 3, 5) and moved.base is None  # a buffer of its own
    want = np.zeros((4, 3, 5), np.float32)
    want[:, :, :2] = rows[[0, 0, 1, 1], :, :2]  # up to the longest source row's entries
    np.testing.assert_array_equal(moved, want)
    # without lengths (e.g. a position vector) every entry is copied
    np.testing.assert_array_equal(move_rows(rows, np.array([1, 0, 1])), rows[[1, 0, 1]])


def test_joining_rows_reuse_spare_rows_and_are_masked_past_their_width() -> None:
    buffer = np.ones((6, 4), dtype=np.int64)
    running = buffer[:2]
    joined = append_rows(running, [np.full((1, 2), 7, np.int64)], axis=1)
    assert np.shares_memory(joined, buffer)
    assert joined.tolist() == [[1, 1, 1, 1], [1, 1, 1, 1], [7, 7, 0, 0]]
    wider = append_rows(joined, [np.full((4, 5), 3, np.int64)], axis=1)
    assert wider.shape == (7, 5) and not np.shares_memory(wider, buffer)
    assert wider[:3, :4].tolist() == joined.tolist() and not wider[:3, 4].any()


def carried(rows: int, filled: list[int]) -> dict[str, np.ndarray]:
    state = {spec.input: column_cache.allocate(spec, rows, 4) for spec in (KEY, MASK)}
    for row, count in enumerate(filled):
        state["past_mask"][row, :count] = 1
        state["past_key_0"][row, :, :count] = -1
    state["position"] = np.array(filled, dtype=np.int64)
    return state


def outputs(rows: int, value: float) -> dict[str, np.ndarray]:
    return {"past_key_0": np.full((rows, 2, 1, 3), value, np.float32),
            "past_mask": np.ones((rows, 1), np.int64),
            "position": np.arange(rows, dtype=np.int64) + 100}


@pytest.mark.parametrize("filled", [[2, 2], [0, 3]])
def test_new_entries_go_to_each_rows_next_free_column(filled: list[int]) -> None:
    writer = ColumnWriter([KEY, MASK, POSITION], "past_mask", max_columns=64)
    after = writer.write(carried(2, filled), outputs(2, 5.0))
    for row, count in enumerate(filled):
        assert after["past_mask"][row].tolist() == [1] * (count + 1) + [0] * (3 - count)
        assert (after["past_key_0"][row, :, count] == 5).all()
        assert (after["past_key_0"][row, :, :count] == -1).all()
    assert after["position"].tolist() == [100, 101]  # other state is replaced


def test_a_full_buffer_grows_by_a_step_and_keeps_its_entries() -> None:
    writer = ColumnWriter([KEY, MASK, POSITION], "past_mask", max_columns=64)
    after = writer.write(carried(2, [4, 1]), outputs(2, 5.0))
    assert after["past_mask"].shape == (2, column_cache.COLUMN_STEP)
    assert after["past_mask"].sum(axis=1).tolist() == [5, 2]
    assert (after["past_key_0"][0, :, :4] == -1).all() and (after["past_key_0"][0, :, 4] == 5).all()
    assert writer.shrink(after) is after  # fewer than SHRINK_STEPS steps spare
    shrunk = writer.shrink(writer.resize(after, 5 + column_cache.SHRINK_STEPS * 16))
    assert shrunk["past_mask"].shape == (2, column_cache.COLUMN_STEP)  # back to one step
    np.testing.assert_array_equal(shrunk["past_key_0"], after["past_key_0"])


GRAPH_KEY = StateSpec("past_key_0", "present_key_0", "float32", ["batch", 2, "cache_len", 3],
                      "empty", grow_axis=2, in_place=True, graph_writes=True)


def test_a_buffer_the_graph_wrote_is_kept_and_only_the_mask_written() -> None:
    writer = ColumnWriter([GRAPH_KEY, MASK, POSITION], "past_mask", max_columns=64)
    state = carried(2, [2, 0])
    before = state["past_key_0"].copy()
    after = writer.write(state, {**outputs(2, 5.0), "past_key_0": state["past_key_0"]})
    assert after["past_key_0"] is state["past_key_0"]
    np.testing.assert_array_equal(after["past_key_0"], before)  # the host wrote nothing there
    assert after["past_mask"].sum(axis=1).tolist() == [3, 1]


def test_room_is_made_before_a_step_only_when_a_row_is_full() -> None:
    writer = ColumnWriter([GRAPH_KEY, MASK, POSITION], "past_mask", max_columns=64)
    roomy = carried(2, [3, 1])  # 4 columns, the longest row uses 3
    assert writer.make_room(roomy) is roomy
    full = carried(2, [4, 1])
    grown = writer.make_room(full)
    assert grown["past_mask"].shape == (2, column_cache.COLUMN_STEP)
    np.testing.assert_array_equal(grown["past_key_0"][:, :, :4], full["past_key_0"])
