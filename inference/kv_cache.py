"""The decoder state: key/value caches the graph writes in place, and everything fed with them.

One :class:`KVCache` holds, for the rows of a running search, the buffers a decoder step
reads: the source mask and encoder outputs (*static*, one row per input when its beams share
them), and the *carried* state: key/value buffers ``(rows, heads, capacity, head_dim)``, the
cache mask ``(rows, capacity)`` (1 = a real entry; a row's entries are its first ones), the
position, or an RNN's ``h``/``c``. The decoder's ``GroupQueryAttention`` writes each step's keys
and values at each row's length, into the very buffer it reads (bound as input and output);
the cache then marks that column in the mask. It grows the buffers before a step that needs a
free column, moves rows when the search reorders or drops them, appends the rows of inputs
that join a running batch, and shrinks the buffers when long rows leave. The buffers live in
a :mod:`~inference.memory` (numpy on the host, ``OrtValue`` s on a device); the cache
mask and source mask are small and stay on the host.

A step or reorder writes into the state's buffers: the state passed in is consumed. Use
:meth:`KVCache.copy` (host memory) to keep one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from inference import host_rows
from inference.bundle import DecoderContract
from inference.memory import Buffer, HostMemory, OrtMemory

Memory = HostMemory | OrtMemory
# Buffers grow and shrink in steps of this many columns: the decoder reads every column, so
# spare ones cost a read per step, while each resize copies the cache once.
COLUMN_STEP = 16
# Shrink only with this many steps of columns spare, so that a continuous batch's longest row
# coming and going does not shrink and grow the buffers at every departure.
SHRINK_STEPS = 2
FIRST_COLUMNS = 32  # a new cache covers this many tokens (fewer if no row may generate more)
HOST = HostMemory()  # where the masks live, whatever the home of the buffers


def first_capacity(max_length: int | None) -> int:
    """Columns of a new cache: ``FIRST_COLUMNS``, or the whole output rounded up to a step when
    every row is capped below that (``max_length``: the most tokens any row may generate)."""
    if max_length is None:
        return FIRST_COLUMNS
    return max(1, min(_round_up(max_length, COLUMN_STEP), FIRST_COLUMNS))


@dataclass(frozen=True)
class CacheLayout:
    """Which decoder inputs are which, from the bundle's state contract."""

    kv: dict[str, int]  # key/value buffer input -> its capacity axis
    cache_mask: str | None
    src_axes: dict[str, int]  # static input -> its source-length axis
    grouped: bool  # an input's beams may share one static row
    max_columns: int

    @classmethod
    def of(cls, contract: DecoderContract, max_positions: int) -> CacheLayout:
        return cls({s.input: int(s.grow_axis or 0) for s in contract.state if s.graph_writes},
                   contract.cache_mask,
                   {s.input: s.shape.index("src_len") for s in contract.static},
                   contract.grouped_static, max_positions)


@dataclass
class KVCache:
    """The state of ``rows`` decoder rows; see the module docstring.

    ``mask`` ``(static rows, src_len)`` and ``static`` (axis 0: static rows) feed every step;
    ``carried`` (axis 0: rows) and ``cache_mask`` ``(rows, capacity)`` change every step.
    ``group``: buffer rows ``r * group .. r * group + group - 1`` read static row ``r``.
    ``order`` ``(rows,)``: the buffer row of each of the search's rows (None: the same).
    ``origin`` ``(static rows,)``: which encoded input each static row holds."""

    layout: CacheLayout
    memory: Memory
    mask: np.ndarray
    static: dict[str, Buffer]
    carried: dict[str, Buffer]
    cache_mask: np.ndarray | None
    origin: np.ndarray
    order: np.ndarray | None = None
    group: int = 1

    @property
    def rows(self) -> int:
        """Decoder rows."""
        return len(self.origin) * self.group

    def copy(self) -> KVCache:
        """A state with its own carried buffers (host memory)."""
        assert isinstance(self.memory, HostMemory)
        return replace(self, carried={name: value.copy() for name, value in self.carried.items()},
                       cache_mask=None if self.cache_mask is None else self.cache_mask.copy(),
                       order=None if self.order is None else self.order.copy())

    def host_feeds(self, tokens: np.ndarray) -> dict[str, np.ndarray]:
        """``input_ids`` ``(rows, 1)`` in buffer order, the source mask and the cache mask."""
        if self.order is not None:  # the search's rows -> buffer rows
            placed = np.empty_like(tokens)
            placed[self.order] = tokens
            tokens = placed
        feeds = {"input_ids": tokens.reshape(-1, 1), "encoder_attention_mask": self.mask}
        if self.cache_mask is not None:
            feeds[self.layout.cache_mask or ""] = self.cache_mask
        return feeds

    def in_search_order(self, rows: np.ndarray) -> np.ndarray:
        """Per-row outputs ``(rows, ...)`` of a step, from buffer order to the search's."""
        return rows if self.order is None else rows[self.order]

    def make_room(self) -> None:
        """Grow the buffers if a row has no free column for the next entry."""
        if self.cache_mask is None:
            return
        needed = int(self.cache_mask.sum(axis=1).max(initial=0)) + 1
        if needed > self.cache_mask.shape[1]:
            self._resize(max(needed, min(_round_up(needed, COLUMN_STEP),
                                         self.layout.max_columns)))

    def advance(self, carried: dict[str, Buffer]) -> None:
        """Take a step's state outputs (by input name) and mark each row's new entry."""
        if self.cache_mask is not None:
            host_rows.write_column(self.cache_mask, self.cache_mask.sum(axis=1))
        self.carried.update(carried)

    def reorder(self, index: np.ndarray) -> KVCache:
        """Continue with the search's rows ``index`` (axis 0): rows selected, repeated
        (beams expanding) or dropped (finished inputs). On the host, rows whose group of beams
        keeps its rows move inside their buffers, few of them (``host_rows.place_rows``)."""
        if self.order is None and len(index) == self.rows and (
                index == np.arange(len(index))).all():
            return self
        parents = index if self.order is None else self.order[index]
        runs = _run_length(parents // self.group)
        group = runs if self.layout.grouped and runs else 1
        # rows move inside their buffers when each group of rows continues one old group
        in_place = (self.memory.moves_in_place and bool(self.layout.kv)
                    and runs == group == self.group and len(index) <= self.rows)
        order: np.ndarray | None = None
        source = parents
        if in_place:
            order, source = host_rows.place_rows(parents, group)
            if (order == np.arange(len(order))).all():
                order = None
        lengths = None if self.cache_mask is None else self.cache_mask.sum(axis=1)
        carried = {name: self.memory.take(value, source, axis=self.layout.kv.get(name),
                                          lengths=lengths, in_place=in_place)
                   for name, value in self.carried.items()}
        cache_mask = (None if self.cache_mask is None else
                      HOST.take(self.cache_mask, source, in_place=in_place))
        state = replace(self, carried=carried, cache_mask=cache_mask, order=order, group=group)
        state._select_static(source[::group] // self.group, in_place=in_place)
        return state

    def _select_static(self, rows: np.ndarray, *, in_place: bool) -> None:
        """Static row ``i`` takes static row ``rows[i]``, unless it holds that input already."""
        origin = self.origin[rows]
        if len(rows) == len(self.origin) and (origin == self.origin).all():
            return
        self.mask = HOST.take(self.mask, rows, in_place=in_place)
        self.static = {name: self.memory.take(value, rows, in_place=in_place)
                       for name, value in self.static.items()}
        self.origin = origin

    def join(self, joining: KVCache) -> KVCache:
        """This state's rows followed by ``joining``'s (a fresh state, rows in input order, as
        many per static row as here), written behind them in the same buffers where they have
        room; the narrower side's cache and source axes are zero-padded (masked)."""
        assert joining.order is None and joining.group == self.group
        memory = self.memory
        order = self.order
        if order is not None:
            order = np.concatenate([order, np.arange(self.rows, self.rows + joining.rows)])
        carried = {name: memory.append(value, joining.carried[name], self.layout.kv.get(name))
                   for name, value in self.carried.items()}
        cache_mask = self.cache_mask
        if cache_mask is not None and joining.cache_mask is not None:
            cache_mask = HOST.append(cache_mask, joining.cache_mask, 1)
        static = {name: memory.append(value, joining.static[name], self.layout.src_axes[name])
                  for name, value in self.static.items()}
        origin = np.concatenate([self.origin, joining.origin + int(self.origin.max()) + 1])
        return replace(self, mask=HOST.append(self.mask, joining.mask, 1), static=static,
                       carried=carried, cache_mask=cache_mask, origin=origin, order=order)

    def trim(self) -> None:
        """Shrink the buffers once ``SHRINK_STEPS`` steps of columns are spare in every row,
        and the source axis once the live sources use at most half of it (rows left)."""
        if self.cache_mask is not None:
            used = int(self.cache_mask.sum(axis=1).max(initial=0))
            if self.cache_mask.shape[1] - used >= SHRINK_STEPS * COLUMN_STEP:
                self._resize(_round_up(used + 1, COLUMN_STEP))
        columns = np.flatnonzero(self.mask.any(axis=0))
        needed = int(columns[-1]) + 1 if len(columns) else 1
        if 2 * needed <= self.mask.shape[1]:
            self.mask = np.ascontiguousarray(self.mask[:, :needed])
            self.static = {name: self.memory.resize(value, self.layout.src_axes[name], needed)
                           for name, value in self.static.items()}

    def _resize(self, columns: int) -> None:
        """The same entries in buffers of ``columns`` columns."""
        assert self.cache_mask is not None
        self.cache_mask = host_rows.resize_axis(self.cache_mask, 1, columns)
        for name, axis in self.layout.kv.items():
            self.carried[name] = self.memory.resize(self.carried[name], axis, columns)



def _run_length(owners: np.ndarray) -> int:
    """``G`` when ``owners`` ``(rows,)`` (each row's static row) is runs of ``G`` equal values,
    each value in one run only (an input's ``G`` beams, consecutive); else 0."""
    count = len(np.unique(owners))
    if not count or len(owners) % count:
        return 0
    group = len(owners) // count
    if (owners.reshape(count, group) == owners[::group, None]).all():
        return group
    return 0


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def new_origin(rows: int) -> np.ndarray:
    """``origin`` of a freshly encoded state: each static row holds its own input."""
    return np.arange(rows, dtype=np.int64)

