"""Host buffers: rows placed so that few move, moved rows equal a plain gather, spare rows
reused for joining rows, resizing keeps the entries."""

from __future__ import annotations

import numpy as np
import pytest

from inference.host_rows import (
    append_rows,
    move_rows,
    place_rows,
    resize_axis,
    write_column,
)


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



def test_resizing_keeps_the_entries_and_the_spare_rows() -> None:
    buffer = np.zeros((5, 4), dtype=np.float32)
    buffer[:] = np.arange(5 * 4).reshape(5, 4)
    grown = resize_axis(buffer[:3], 1, 6)
    assert grown.shape == (3, 6) and grown.base is not None and len(grown.base) == 5
    np.testing.assert_array_equal(grown[:, :4], buffer[:3])
    assert not grown[:, 4:].any()
    np.testing.assert_array_equal(resize_axis(grown, 1, 2), buffer[:3, :2])


@pytest.mark.parametrize("filled", [[2, 2], [0, 3]])
def test_the_next_entry_is_each_rows_first_free_column(filled: list[int]) -> None:
    mask = np.zeros((2, 4), dtype=np.int64)
    for row, count in enumerate(filled):
        mask[row, :count] = 1
    write_column(mask, np.array(filled))
    assert mask.sum(axis=1).tolist() == [count + 1 for count in filled]
    assert all(mask[row, : count + 1].all() for row, count in enumerate(filled))
