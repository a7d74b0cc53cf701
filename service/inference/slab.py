"""The encoder outputs and source mask of a continuous batch's running rows, in host memory
(``OnnxModel.new_slab``; ``device_rows.DeviceSlab`` is the same on the device)."""

from __future__ import annotations

import numpy as np


class StaticSlab:
    """Encoder outputs and source mask of the running rows, in reusable buffers.

    Rows ``[0, rows)`` are live. Joining rows are written after them; the rows of inputs that
    leave are filled with the rows of the last inputs (:meth:`compact`), so neither copies the rows
    that stay (copying every static tensor at every join or departure took about a quarter of
    the decoding time, docs/benchmarks.md). Buffers are ``capacity`` rows by ``width`` source
    positions; positions past a row's source are masked, so the decoder may attend over the
    whole ``width``.
    """

    def __init__(self, src_axes: dict[str, int]) -> None:
        self.src_axes = src_axes
        self.rows = 0
        self.mask = np.zeros((0, 0), dtype=np.int64)
        self.static: dict[str, np.ndarray] = {}

    @property
    def width(self) -> int:
        """Source positions the decoder sees."""
        return int(self.mask.shape[1])

    def view(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The live rows: mask ``(rows, width)`` and every static tensor (no copy)."""
        return self.mask[: self.rows], {name: buf[: self.rows] for name, buf in self.static.items()}

    def append(self, mask: np.ndarray, static: dict[str, np.ndarray]) -> None:
        """Add rows after the live ones; ``mask`` ``(n, src_len)``."""
        count, src = mask.shape
        if not self.static or self.rows + count > len(self.mask) or src > self.width:
            self._reallocate(max(2 * (self.rows + count), 8), max(src, self.width), static)
        end = self.rows + count
        self.mask[self.rows : end] = 0
        self.mask[self.rows : end, :src] = mask
        for name, axis in self.src_axes.items():
            self.static[name][self._rows_and_src(axis, self.rows, end, src)] = static[name]
        self.rows = end

    def compact(self, source: np.ndarray, target: np.ndarray, rows: int) -> None:
        """Keep ``rows`` rows, row ``target[i]`` taking row ``source[i]``'s content (copied in
        place), and narrow the buffers if the live sources allow it."""
        if len(source):
            self.mask[target] = self.mask[source]
            for buf in self.static.values():
                buf[target] = buf[source]
        self.rows = rows
        self.shrink()

    def shrink(self) -> None:
        """Narrow the buffers when the live sources use at most half the width."""
        used = np.flatnonzero(self.mask[: self.rows].any(axis=0))
        needed = int(used[-1]) + 1 if len(used) else 1
        if 2 * needed <= self.width:
            self._reallocate(len(self.mask), needed, None)

    def _rows_and_src(self, axis: int, start: int, end: int, src: int) -> tuple[slice, ...]:
        index = [slice(None)] * self.static[next(iter(self.static))].ndim
        index[0], index[axis] = slice(start, end), slice(0, src)
        return tuple(index)

    def _reallocate(self, capacity: int, width: int,
                    example: dict[str, np.ndarray] | None) -> None:
        old_mask, old_static = self.mask, self.static
        keep = min(width, self.width)
        self.mask = np.zeros((capacity, width), dtype=np.int64)
        self.mask[: self.rows, :keep] = old_mask[: self.rows, :keep]
        template = old_static or example or {}
        self.static = {}
        for name, axis in self.src_axes.items():
            shape = list(template[name].shape)
            shape[0], shape[axis] = capacity, width
            self.static[name] = np.zeros(shape, dtype=template[name].dtype)
            if old_static:
                index = self._rows_and_src(axis, 0, self.rows, keep)
                self.static[name][index] = old_static[name][index]
