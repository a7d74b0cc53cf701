"""Caches written in place, for bundles whose growing state is ``in_place``
(``StateSpec.in_place``, docs/bundle-format.md).

The decoder graph reads each key/value buffer ``(rows, heads, capacity, head_dim)`` and the
cache mask ``(rows, capacity)`` without copying them (ONNX Runtime wraps contiguous numpy
inputs, prefix views included) and returns only the step's new entry. :class:`ColumnWriter`
writes that entry at each row's next free column, the number of ones in its mask row, so a
row's entries are always its first columns. Buffers grow (and, when long rows leave, shrink)
by ``COLUMN_STEP`` columns, one copy each time, instead of being copied by the graph at every
step.

Rows are moved in place as well. Beam search reorders rows at every step; :func:`place_rows`
chooses where each new row lives so that few rows move (a beam's first child stays in its
parent's row, a finished input's block is filled by one from the end), and :func:`move_rows`
copies only those, and only their used entries. A state therefore has an ``order`` (its
logical rows -> buffer rows). The result is a prefix view of the same buffer, so rows can later
be appended behind it without a copy (:func:`append_rows`, continuous batching).

A state whose buffers were written this way is consumed by the call: use the returned state,
or ``OnnxState.copy`` first to keep the old one.
"""

from __future__ import annotations

import numpy as np

from service.bundle import StateSpec

# Buffers grow and shrink in steps of this many columns. The decoder attends over the whole
# capacity (reading every column of every row), so spare columns cost a read per step; a
# resize copies the cache once. Growing by 16 leaves at most 15 spare columns after a growth
# and resizes every 16 steps (docs/benchmarks.md, "fifth session").
COLUMN_STEP = 16
# Shrink only with this many steps spare: a continuous batch's longest row comes and goes, so
# some hysteresis keeps its buffers from shrinking and growing again at every departure. Two
# steps (32 columns) beat four side by side (docs/benchmarks.md, "seventh session": in process
# 1-11 % faster at 6, 24 and 48 requests in flight; over HTTP, saturated, a median 1.04x over
# six interleaved rounds); the fifth session's choice of four came from runs minutes apart.
SHRINK_STEPS = 2
FIRST_COLUMNS = 32  # a new cache covers this many tokens (fewer if no row may generate more)


def first_capacity(max_length: int | None) -> int:
    """Columns of a new cache: enough for ``FIRST_COLUMNS`` tokens, or for the whole output when
    every row is capped below that (``max_length``: the most tokens any row may generate), so
    short outputs never resize (a resize faults in fresh memory: 0.44 s of a 5.3 s batch of 256
    beams in bench.engines) and long ones start without many spare columns."""
    if max_length is None:
        return FIRST_COLUMNS
    return max(1, min(_round_up(max_length, COLUMN_STEP), FIRST_COLUMNS))


def allocate(spec: StateSpec, rows: int, capacity: int = FIRST_COLUMNS) -> np.ndarray:
    """Zeros of ``spec``'s shape with ``rows`` rows and ``capacity`` entries on every named
    axis other than the batch."""
    shape = [rows if d == "batch" else capacity if isinstance(d, str) else d for d in spec.shape]
    return np.zeros(shape, dtype=spec.dtype)


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
    of other rows (``place_rows`` ensures it)."""
    base = owner(array)
    count = len(source)
    if count > len(base) or not base.flags.c_contiguous:
        return _gathered(array, source, axis, lengths)
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


def _gathered(array: np.ndarray, source: np.ndarray, axis: int | None,
              lengths: np.ndarray | None) -> np.ndarray:
    """Rows ``source`` of ``array`` in a new buffer; of a grow ``axis``, only the entries the
    source rows use are copied (the rest stay zero, masked). A beam search's first expansion
    (one row per input -> one per beam) copies one used column of a 32-column cache this way,
    not the whole buffer (4 % of a beam-4 batch-64 run, docs/benchmarks.md)."""
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


def place_rows(parents: np.ndarray, group: int, blocks: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Where to put the next step's rows so that as few as possible are copied.

    ``parents`` ``(m,)``: the buffer row each new row continues; new rows come in groups of
    ``group`` consecutive rows (one input's beams), whose parents lie in one block of
    ``group`` buffer rows. Each group goes to block ``blocks[g]``, or by default stays in its
    block when that block is among the first ``m / group`` and otherwise fills a block that
    was freed. Inside a block, the first child of each parent takes the parent's row and the
    other children take rows that have no children. Returns ``order`` ``(m,)`` (new row ->
    buffer row) and ``source`` ``(m,)`` (buffer row -> the old row to copy into it; itself
    where nothing moves), for :func:`move_rows`."""
    count = len(parents)
    groups = count // group
    old_blocks = parents[::group] // group
    if blocks is None:
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
    it has room (else in a new one with twice the rows). With a grow ``axis``, a part narrower
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


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


class ColumnWriter:
    """Writes each step's new entries into the in-place buffers of a carried state."""

    def __init__(self, specs: list[StateSpec], cache_mask: str, max_columns: int) -> None:
        self.axes = {spec.input: int(spec.grow_axis or 0) for spec in specs if spec.in_place}
        # buffers whose new entries the graph writes itself (StateSpec.graph_writes)
        self.graph_written = {spec.input for spec in specs if spec.graph_writes}
        self.cache_mask = cache_mask
        self.max_columns = max_columns

    def make_room(self, carried: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``carried``, in grown buffers if a row has no free column for the next entry (the
        same dict when every row has one)."""
        return self._room(carried, carried[self.cache_mask].sum(axis=1))

    def _room(self, carried: dict[str, np.ndarray], filled: np.ndarray
              ) -> dict[str, np.ndarray]:
        """:meth:`make_room` given each row's used columns ``filled`` ``(rows,)``."""
        needed = int(filled.max(initial=0)) + 1
        if needed > carried[self.cache_mask].shape[1]:
            return self.grow(carried, needed)
        return carried

    def write(self, carried: dict[str, np.ndarray], new: dict[str, np.ndarray]
              ) -> dict[str, np.ndarray]:
        """The next carried state: ``new`` (step outputs by input name) written at each row's
        next free column of the in-place buffers of ``carried`` (grown if a row is full), and
        taken as is for the other state (e.g. the position). A buffer the graph wrote itself is
        taken from ``new`` (``carried``'s own buffer when the step was bound to it)."""
        filled = carried[self.cache_mask].sum(axis=1)
        carried = self._room(carried, filled)  # growing keeps every row's entries
        out = {name: value for name, value in new.items() if name not in self.axes}
        uniform = bool(len(filled)) and int(filled.min()) == int(filled.max())
        for name, axis in self.axes.items():
            if name in self.graph_written:  # the same buffer when bound, else ORT's copy
                out[name] = new[name]
                continue
            buffer = carried[name]
            out[name] = buffer
            entry = new[name][(slice(None),) * axis + (0,)]  # a view: the write is the copy
            index: list[slice | int | np.ndarray] = [slice(None)] * buffer.ndim
            if uniform:  # every row writes the same column (no join since the batch began)
                index[axis] = int(filled[0])
            else:
                index[0], index[axis] = np.arange(len(filled)), filled
            buffer[tuple(index)] = entry
        return out

    def gather(self, carried: dict[str, np.ndarray], source: np.ndarray
               ) -> dict[str, np.ndarray]:
        """:func:`move_rows` for every carried tensor (of each row, only its used entries)."""
        lengths = carried[self.cache_mask].sum(axis=1)
        return {name: move_rows(value, source, axis=self.axes.get(name),
                                lengths=None if name == self.cache_mask else lengths)
                for name, value in carried.items()}

    def shrink(self, carried: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The same state in smaller buffers once ``SHRINK_STEPS`` steps of columns are spare in
        every row (the rows that needed them left: continuous batching)."""
        capacity = carried[self.cache_mask].shape[1]
        used = int(carried[self.cache_mask].sum(axis=1).max(initial=0))
        if capacity - used < SHRINK_STEPS * COLUMN_STEP:
            return carried
        return self.resize(carried, _round_up(used + 1, COLUMN_STEP))

    def grow(self, carried: dict[str, np.ndarray], needed: int) -> dict[str, np.ndarray]:
        """The same state in buffers of at least ``needed`` columns (rounded up to a step,
        up to the model's positions)."""
        return self.resize(carried, max(needed, min(_round_up(needed, COLUMN_STEP),
                                                    self.max_columns)))

    def resize(self, carried: dict[str, np.ndarray], columns: int) -> dict[str, np.ndarray]:
        """The same state in new buffers of ``columns`` columns (the used ones must fit),
        keeping each buffer's spare rows."""
        keep = min(columns, carried[self.cache_mask].shape[1])
        out = dict(carried)
        for name, axis in self.axes.items():
            value = carried[name]
            base = owner(value)
            shape = list(base.shape)
            shape[axis] = columns
            resized = np.zeros(shape, dtype=value.dtype)
            index: list[slice] = [slice(0, len(value))] + [slice(None)] * (value.ndim - 1)
            index[axis] = slice(0, keep)
            resized[tuple(index)] = value[tuple(index)]
            out[name] = resized[: len(value)]
        return out
