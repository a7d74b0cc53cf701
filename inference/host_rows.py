"""Row and column operations on buffers in host memory (numpy), done in place where they can.

A buffer is a C-contiguous array; the state holds a *prefix view* of it (its first rows), so
that rows can later be written behind the live ones without a copy (:func:`append_rows`) and
rows can be moved inside it (:func:`move_rows`). :func:`place_rows` chooses where the rows of
the next beam-search step live so that few rows move.
"""

from __future__ import annotations

import numpy as np


def owner(array: np.ndarray) -> np.ndarray:
    """The buffer ``array`` is a leading-rows view of (``array`` itself if none)."""
    base = array.base
    if (isinstance(base, np.ndarray) and base.dtype == array.dtype
            and base.shape[1:] == array.shape[1:] and len(base) >= len(array)
            and base.ctypes.data == array.ctypes.data and base.flags.c_contiguous):
        return base
    return array


def move_rows(array: np.ndarray, source: np.ndarray, *, axis: int | None = None,
              lengths: np.ndarray | None = None) -> np.ndarray:
    """Row ``q`` of the result is row ``source[q]`` of ``array`` (axis 0). In place when the
    buffer has room: only rows whose source differs are copied, one by one (of a grow
    ``axis``, only the source row's first ``lengths[row]`` entries: the rest is masked), and the
    result is a prefix view of ``array``'s buffer. Rows that are copied to must not be sources
    of other rows (:func:`place_rows` ensures it)."""
    base = owner(array)
    count = len(source)
    if count > len(base) or not base.flags.c_contiguous:
        return gather_rows(array, source, axis=axis, lengths=lengths)
    changed = np.flatnonzero(source != np.arange(count))
    index: list[int | slice] = [0] + [slice(None)] * (array.ndim - 1)
    for target, row in zip(changed.tolist(), source[changed].tolist(), strict=True):
        if axis is not None and lengths is not None:
            index[axis] = slice(0, int(lengths[row]))
        index[0] = row
        value = array[tuple(index)]
        index[0] = target
        base[tuple(index)] = value
    return base[:count]


def gather_rows(array: np.ndarray, source: np.ndarray, *, axis: int | None = None,
                lengths: np.ndarray | None = None) -> np.ndarray:
    """Rows ``source`` of ``array`` in a new buffer; of a grow ``axis``, only the entries the
    source rows use are copied (the rest stay zero, masked): a beam search's first expansion
    copies one used column of a 32-column cache this way, not the whole buffer."""
    if axis is None or lengths is None or not len(source):
        return np.take(array, source, axis=0)
    used = int(lengths[source].max())
    if used >= array.shape[axis]:
        return np.take(array, source, axis=0)
    out = np.zeros((len(source), *array.shape[1:]), dtype=array.dtype)
    index: list[slice] = [slice(None)] * array.ndim
    index[axis] = slice(0, used)
    out[tuple(index)] = np.take(array[tuple(index)], source, axis=0)
    return out


def place_rows(parents: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray]:
    """Where to put the next step's rows so that as few as possible are copied.

    ``parents`` ``(m,)``: the buffer row each new row continues; new rows come in groups of
    ``group`` consecutive rows (one input's beams), whose parents lie in one block of
    ``group`` buffer rows. Each group stays in its block when that block is among the first
    ``m / group`` and otherwise fills a block that was freed. Inside a block, the first child
    of each parent takes the parent's row and the other children take rows that have no
    children. Returns ``order`` ``(m,)`` (new row -> buffer row) and ``source`` ``(m,)``
    (buffer row -> the old row to copy into it; itself where nothing moves)."""
    count = len(parents)
    groups = count // group
    old_blocks = parents[::group] // group
    blocks = old_blocks.copy()
    movers = np.flatnonzero(old_blocks >= groups)
    free = np.setdiff1d(np.arange(groups), old_blocks[old_blocks < groups])
    blocks[movers] = free[: len(movers)]
    offsets = _offsets(parents.reshape(groups, group) % group)
    order = (np.repeat(blocks, group) * group + offsets).astype(np.int64)
    source = np.empty(count, dtype=np.int64)
    source[order] = parents
    return order, source


def _offsets(parent_offsets: np.ndarray) -> np.ndarray:
    """Row offsets ``(groups * group,)`` in their blocks for children whose parents have the
    offsets ``(groups, group)``: a parent's first child keeps its offset, the other children
    take, in order, the offsets of rows nobody continues."""
    groups, group = parent_offsets.shape
    keys = (np.arange(groups)[:, None] * group + parent_offsets).reshape(-1)
    first = np.zeros(len(keys), dtype=bool)
    first[np.unique(keys, return_index=True)[1]] = True
    continued = np.zeros((groups, group), dtype=bool)
    continued[np.arange(groups)[:, None], parent_offsets] = True
    offsets = parent_offsets.reshape(-1).copy()
    offsets[~first] = np.nonzero(~continued)[1]  # both in group order, equal counts per group
    return offsets


def append_rows(array: np.ndarray, parts: list[np.ndarray], axis: int | None) -> np.ndarray:
    """``array``'s rows followed by each part's, written behind them in the same buffer when
    it has room (else in a new one with twice the rows). With a pad ``axis``, a part narrower
    than the buffer fills its first entries and the rest are zeroed (masked); a wider part
    widens the buffer."""
    count = len(array)
    total = count + sum(len(part) for part in parts)
    base = owner(array)
    width = max([array.shape[axis], *(part.shape[axis] for part in parts)]) if axis else None
    if total > len(base) or (axis and width != base.shape[axis]) or not base.flags.c_contiguous:
        shape = list(array.shape)
        shape[0] = max(2 * total, 8)
        if axis and width is not None:
            shape[axis] = width
        base = np.zeros(shape, dtype=array.dtype)
        _write(base, count=0, part=array, axis=axis)
    for part in parts:
        _write(base, count=count, part=part, axis=axis)
        count += len(part)
    return base[:total]


def _write(base: np.ndarray, *, count: int, part: np.ndarray, axis: int | None) -> None:
    rows = slice(count, count + len(part))
    if not axis or part.shape[axis] == base.shape[axis]:
        base[rows] = part
        return
    index: list[slice] = [rows] + [slice(None)] * (base.ndim - 1)
    index[axis] = slice(0, part.shape[axis])
    base[tuple(index)] = part
    index[axis] = slice(part.shape[axis], None)
    base[tuple(index)] = 0


def resize_axis(array: np.ndarray, axis: int, size: int) -> np.ndarray:
    """The same rows in a new buffer of ``size`` entries along ``axis`` (cut, or zero-padded
    on the right), keeping the spare rows of ``array``'s buffer."""
    base = owner(array)
    shape = list(base.shape)
    shape[axis] = size
    resized = np.zeros(shape, dtype=array.dtype)
    index: list[slice] = [slice(0, len(array))] + [slice(None)] * (array.ndim - 1)
    index[axis] = slice(0, min(size, array.shape[axis]))
    resized[tuple(index)] = array[tuple(index)]
    return resized[: len(array)]


def write_column(mask: np.ndarray, filled: np.ndarray) -> None:
    """Mark each row's next entry of a ``(rows, capacity)`` cache mask as used: column
    ``filled[row]``, the row's count of used entries."""
    if len(filled) and int(filled.min()) == int(filled.max()):  # no join since the batch began
        mask[:, int(filled[0])] = 1
    else:
        mask[np.arange(len(filled)), filled] = 1
