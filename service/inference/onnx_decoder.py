"""The model protocol implemented with ONNX Runtime sessions and a bundle's state contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from service.bundle import Manifest, StateSpec
from service.inference import column_cache
from service.inference.search import Candidates, top_k
from service.inference.slab import StaticSlab

ENCODE_ROWS = 16  # rows per encoder call (docs/benchmarks.md: 64 / 32 / 16 / 8 compared)
# Fewer rows than this run without IO binding (ONNX Runtime then returns copies of the caches
# the graph writes): at batch 1 binding the ~40 inputs cost more than copying the small caches
# (shipped model, greedy batch 1: 0.376 against 0.397 s, int8 0.235 against 0.256 s;
# docs/benchmarks.md, "Caches written by the graph").
BIND_MIN_ROWS = 8


@dataclass
class OnnxState:
    """Decoder state; every array has the batch on axis 0.

    mask ``(rows, src_len)``; static: encoder outputs fed unchanged every step (cross keys and
    values, RNN memory); carried: fed back from the previous step (key/value cache, h/c).
    ``order`` ``(rows,)``: the array row of each of the search's rows, when they differ (in-place
    caches move few rows, column_cache.place_rows); None: the same.
    ``group``: carried rows per mask and static row (an input's beams share its encoder
    outputs when the graph allows it, ``DecoderContract.grouped_static``): array rows
    ``r*group .. r*group+group-1`` read mask and static row ``r``.
    """

    mask: np.ndarray
    static: dict[str, np.ndarray]
    carried: dict[str, np.ndarray]
    order: np.ndarray | None = None
    group: int = 1

    def copy(self) -> OnnxState:
        """A state with its own carried arrays. With in-place caches a step or reorder
        writes into the state's buffers (it is consumed); copy first to use one state twice."""
        return OnnxState(self.mask, self.static,
                         {name: value.copy() for name, value in self.carried.items()},
                         None if self.order is None else self.order.copy(), self.group)


class OnnxModel:
    """``encode`` / ``step`` / ``reorder`` over an encoder and a decoder session."""

    def __init__(self, manifest: Manifest, encoder: Any, decoder: Any) -> None:
        self.manifest = manifest
        self.encoder = encoder
        self.decoder = decoder
        contract = manifest.decoder
        self.encoder_names = [spec.name for spec in manifest.encoder_outputs]
        self.state_specs = contract.state
        self.output_names = [contract.log_probs, *(s.output for s in contract.state)]
        self.top_k = contract.top_k
        # a session built for IO binding has ``top_k`` as a required input (device.py)
        self.step_feeds: dict[str, np.ndarray] = {}
        if self.top_k is not None:
            self.top_k_outputs = [self.top_k.values, self.top_k.indices,
                                  *(s.output for s in contract.state)]
            if self.top_k.input in {arg.name for arg in decoder.get_inputs()}:
                self.step_feeds = {self.top_k.input: np.array([1], np.int64)}
        self.steps = 0  # decoder calls, for metrics
        self.grouped_static = contract.grouped_static
        # axis of the source length in each static tensor, for padding on join
        self.src_axes = {spec.input: spec.shape.index("src_len") for spec in contract.static}
        self.grow_axes = {s.input: s.grow_axis for s in contract.state if s.grow_axis is not None}
        # in-place caches: the graph returns new entries, written here (column_cache.py)
        self.columns = (column_cache.ColumnWriter(contract.state, contract.cache_mask,
                                                  manifest.max_positions)
                        if contract.in_place and contract.cache_mask else None)
        # caches the graph writes itself (StateSpec.graph_writes): input name -> output name
        self.graph_written = {s.input: s.output for s in contract.state if s.graph_writes}
        # IO binding cannot bind an input that has an initializer: such a graph's ``k`` is
        # exported without one (top_k.add_top_k_head); otherwise its steps run plainly
        inputs = {arg.name for arg in decoder.get_inputs()}
        self.bindable = bool(self.graph_written) and (
            self.top_k is None or self.top_k.input in inputs)

    @property
    def joinable(self) -> bool:
        """Whether :meth:`merge` can append rows that started at another step."""
        return self.manifest.decoder.joinable

    def encode(self, ids: np.ndarray, mask: np.ndarray, rows_per_call: int = ENCODE_ROWS, *,
               max_length: int | None = None) -> OnnxState:
        """Run the encoder on right-padded ``(rows, src_len)`` ids and build the step-0 state.

        Rows are encoded in groups of ``rows_per_call`` similar lengths, each cut to its own
        longest row, so short inputs do not pay for the padding of long ones; each group's
        static tensors are then written at its rows' places in one buffer per tensor, padded
        to ``src_len`` (masked): one copy, in input order.
        ``max_length`` (the most tokens any row may generate) sizes in-place caches
        (``column_cache.first_capacity``)."""
        columns = column_cache.first_capacity(max_length)
        if len(ids) <= rows_per_call:
            return self._encode(ids, mask, columns)
        lengths = mask.sum(axis=1)
        order = np.argsort(-lengths, kind="stable")
        groups = [order[start : start + rows_per_call]
                  for start in range(0, len(ids), rows_per_call)]
        outputs = []
        for rows in groups:
            width = max(1, int(lengths[rows].max()))
            outputs.append(self._run_encoder(ids[rows, :width], mask[rows, :width]))
        static = {spec.input: scatter_rows([out[spec.source] for out in outputs], groups,
                                           self.src_axes[spec.input], ids.shape[1])
                  for spec in self.manifest.decoder.static}
        carried = {spec.input: self._initial(spec, len(ids), columns) if _not_encoded(spec)
                   else scatter_rows([out[spec.init.split(":", 1)[1]] for out in outputs], groups)
                   for spec in self.state_specs}
        return OnnxState(mask, static, carried)

    def _run_encoder(self, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        """The encoder's outputs by name for right-padded ``(rows, src_len)`` ids."""
        return dict(zip(self.encoder_names,
                        self.encoder.run(None, {"input_ids": ids, "attention_mask": mask}),
                        strict=True))

    def _encode(self, ids: np.ndarray, mask: np.ndarray, columns: int) -> OnnxState:
        outputs = self._run_encoder(ids, mask)
        static = {spec.input: outputs[spec.source] for spec in self.manifest.decoder.static}
        carried = {spec.input: self._initial(spec, len(ids), columns) if _not_encoded(spec)
                   else outputs[spec.init.split(":", 1)[1]] for spec in self.state_specs}
        return OnnxState(mask, static, carried)

    @staticmethod
    def _initial(spec: StateSpec, rows: int, columns: int) -> np.ndarray:
        """The step-0 value of carried state that does not come from the encoder: an in-place
        buffer of ``columns`` entries, or an empty cache."""
        if spec.in_place:
            return column_cache.allocate(spec, rows, columns)
        shape = [rows if d == "batch" else 0 if isinstance(d, str) else d for d in spec.shape]
        return np.zeros(shape, dtype=spec.dtype)

    def _feeds(self, tokens: np.ndarray, state: OnnxState) -> dict[str, np.ndarray]:
        if state.order is not None:  # the search's rows -> array rows
            placed = np.empty_like(tokens)
            placed[state.order] = tokens
            tokens = placed
        return {"input_ids": tokens.reshape(-1, 1), "encoder_attention_mask": state.mask,
                **self.step_feeds, **state.static, **state.carried}

    def _next(self, state: OnnxState, carried: list[np.ndarray]) -> OnnxState:
        """The state after a step whose state outputs are ``carried``; with in-place caches
        the new entries are written into ``state``'s buffers, which the new state reuses."""
        self.steps += 1
        new = dict(zip((s.input for s in self.state_specs), carried, strict=True))
        if self.columns is not None:
            new = self.columns.write(state.carried, new)
        return OnnxState(state.mask, state.static, new, state.order, state.group)

    def _with_room(self, state: OnnxState) -> OnnxState:
        """``state`` with a free column in every row of its in-place buffers, which a graph
        that writes its caches needs for the step's entry (grown here, before the call)."""
        if not self.graph_written or self.columns is None:
            return state
        carried = self.columns.make_room(state.carried)
        if carried is state.carried:
            return state
        return OnnxState(state.mask, state.static, carried, state.order, state.group)

    def _run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The decoder's outputs ``names``. With ``BIND_MIN_ROWS`` rows or more, a cache the
        graph writes is bound to its input's buffer, so ONNX Runtime writes the step's entries
        in place, and comes back as that buffer. Otherwise a plain run, and such a cache comes
        back as ONNX Runtime's copy of it with the entries written; that includes a buffer that
        is not contiguous, which cannot be bound (in-place buffers and their prefix views always
        are contiguous)."""
        buffers = {self.graph_written[name]: feeds[name] for name in self.graph_written}
        if (not self.bindable or len(feeds["input_ids"]) < BIND_MIN_ROWS
                or not all(buffer.flags.c_contiguous for buffer in buffers.values())):
            return list(self.decoder.run(names, feeds))
        binding = self.decoder.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in names:
            buffer = buffers.get(name)
            if buffer is None:
                binding.bind_output(name, "cpu")
            else:
                binding.bind_output(name, "cpu", 0, buffer.dtype, list(buffer.shape),
                                    buffer.ctypes.data)
        self.decoder.run_with_iobinding(binding)
        return [buffers[name] if name in buffers else value.numpy()
                for name, value in zip(names, binding.get_outputs(), strict=True)]

    def step(self, tokens: np.ndarray, state: OnnxState) -> tuple[np.ndarray, OnnxState]:
        """``(rows,)`` tokens -> ``(rows, vocab)`` log-probs and the next state."""
        state = self._with_room(state)
        log_probs, *carried = self._run(self.output_names, self._feeds(tokens, state))
        if state.order is not None:
            log_probs = log_probs[state.order]
        return log_probs, self._next(state, carried)

    def step_top_k(self, tokens: np.ndarray, state: OnnxState, k: int
                   ) -> tuple[Candidates, OnnxState]:
        """``(rows,)`` tokens -> each row's ``k`` best log-probs and ids ``(rows, k)``, best
        first (ties: lower id first), from the graph's top-k head when it has one."""
        if self.top_k is None:
            log_probs, state = self.step(tokens, state)
            return top_k(log_probs, k), state
        state = self._with_room(state)
        feeds = self._feeds(tokens, state)
        feeds[self.top_k.input] = np.array([min(k, self.manifest.vocab_size)], np.int64)
        values, ids, *carried = self._run(self.top_k_outputs, feeds)
        if state.order is not None:
            values, ids = values[state.order], ids[state.order]
        return Candidates(values, ids), self._next(state, carried)

    def reorder(self, state: OnnxState, index: np.ndarray, *, inputs_changed: bool = True,
                group: int = 1) -> OnnxState:
        """The search's rows ``index`` (axis 0) of the carried state; of the mask and the
        static encoder outputs too unless only beams of the same inputs were reordered.
        Rows come in groups of ``group`` (an input's beams); when the graph allows it the
        group shares one mask and static row (``OnnxState.group``), else they are gathered
        per row. With in-place caches rows are moved inside their buffers and only where
        needed (the state records their order)."""
        shared = group if self.grouped_static else 1
        if self.columns is not None:
            return self._move(state, index, inputs_changed=inputs_changed, group=group,
                              shared=shared)
        carried = take_rows(state.carried, index)
        rows = static_rows(state, index, shared, inputs_changed=inputs_changed)
        if rows is None:
            return OnnxState(state.mask, state.static, carried, group=shared)
        return OnnxState(np.take(state.mask, rows, axis=0), take_rows(state.static, rows),
                         carried, group=shared)

    def _move(self, state: OnnxState, index: np.ndarray, *, inputs_changed: bool, group: int,
              shared: int) -> OnnxState:
        assert self.columns is not None
        parents = index if state.order is None else state.order[index]
        order: np.ndarray | None = None
        if len(index) > len(state.mask) * state.group or len(index) % group:  # rows added
            source = parents  # copy them all
        else:
            order, source = self.place_rows(parents, group)
        carried = self.columns.gather(state.carried, source)
        rows = static_rows(state, source, shared, inputs_changed=inputs_changed)  # array order
        if rows is None:
            return OnnxState(state.mask, state.static, carried, order, shared)
        static = {name: column_cache.move_rows(value, rows)
                  for name, value in state.static.items()}
        return OnnxState(column_cache.move_rows(state.mask, rows), static, carried, order, shared)

    def place_rows(self, parents: np.ndarray, group: int, blocks: np.ndarray | None = None
                   ) -> tuple[np.ndarray | None, np.ndarray]:
        """Array rows for the next step's rows, which continue the array rows ``parents``:
        ``(order, source)`` as in ``column_cache.place_rows`` (order None when it is the
        identity). Without in-place caches every row is gathered: ``(None, parents)``."""
        if self.columns is None:
            return None, parents
        order, source = column_cache.place_rows(parents, group, blocks)
        return (None if (order == np.arange(len(order))).all() else order), source

    def new_slab(self) -> StaticSlab:
        """Holder of a continuous batch's source mask and encoder outputs (host memory)."""
        return StaticSlab(self.src_axes)

    def merge_carried(self, running: dict[str, np.ndarray], joining: dict[str, np.ndarray]
                      ) -> dict[str, np.ndarray]:
        """Carried state of ``running`` rows then ``joining`` rows, growing caches left-padded
        (masked) to the longer of the two (in-place caches: no padding)."""
        self._require_joinable()
        if self.columns is not None:
            return self._select_and_append(running, None, [joining])
        carried = {}
        for name, old in running.items():
            new = joining[name]
            axis = self.grow_axes.get(name)
            if axis is not None:
                size = max(old.shape[axis], new.shape[axis])
                old, new = pad_to(old, axis, size, left=True), pad_to(new, axis, size, left=True)
            carried[name] = np.concatenate([old, new])
        return carried

    def select_and_join(self, carried: dict[str, np.ndarray], index: np.ndarray | None,
                        joining: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Rows ``index`` of ``carried`` (all rows when None) followed by the ``joining``
        rows, in one new array per tensor: the selected rows are gathered straight into it
        (one copy, where gathering and then :meth:`merge_carried` made two), and joining
        caches shorter than the running one are left-padded (masked)."""
        if joining:
            self._require_joinable()
        if self.columns is not None:
            return self._select_and_append(carried, index, joining)
        out = {}
        for name, old in carried.items():
            axis = self.grow_axes.get(name)
            parts = [rows[name] for rows in joining]
            if axis is not None and any(p.shape[axis] > old.shape[axis] for p in parts):
                merged = {name: old if index is None else np.take(old, index, axis=0)}
                for part in parts:  # a joining cache is longer: pad the running one (rare)
                    merged = self.merge_carried(merged, {name: part})
                out[name] = merged[name]
                continue
            count = old.shape[0] if index is None else len(index)
            joined = np.empty((count + sum(len(p) for p in parts), *old.shape[1:]), old.dtype)
            if index is None:
                joined[:count] = old
            else:  # mode="clip" lets numpy write into ``out`` without a buffer
                np.take(old, index, axis=0, out=joined[:count], mode="clip")
            for part in parts:
                joined[count : count + len(part)] = (
                    part if axis is None else pad_to(part, axis, old.shape[axis], left=True))
                count += len(part)
            out[name] = joined
        return out

    def _select_and_append(self, carried: dict[str, np.ndarray], index: np.ndarray | None,
                           joining: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """:meth:`select_and_join` for in-place caches: no padding (each row's entries start
        at column 0), rows moved and appended inside the running buffers."""
        assert self.columns is not None
        kept = carried if index is None else self.columns.gather(carried, index)
        if not joining:
            return kept
        return {name: column_cache.append_rows(value, [rows[name] for rows in joining],
                                               self.grow_axes.get(name))
                for name, value in kept.items()}

    def _require_joinable(self) -> None:
        if not self.joinable:
            raise ValueError(f"{self.manifest.name}: the decoder's cache has no mask; "
                             "re-export the bundle to use continuous batching")

    def trim_cache(self, carried: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Cut cache columns that are padding for every row (on the left), once they are a
        quarter of the cache or more."""
        cache_mask = self.manifest.decoder.cache_mask
        if self.columns is not None:  # entries start at column 0: no padding, maybe spare room
            return self.columns.shrink(carried)
        if cache_mask is None:
            return carried
        first = cache_trim_start(carried[cache_mask])
        if not first:
            return carried
        return {name: np.take(value, np.arange(first, value.shape[axis]), axis=axis)
                if (axis := self.grow_axes.get(name)) is not None else value
                for name, value in carried.items()}


def cache_trim_start(mask: np.ndarray) -> int:
    """The first cache column worth keeping for a left-padded cache mask ``(rows, columns)``:
    the first used one once the unused ones before it are a quarter of the cache or more,
    else 0 (keep everything)."""
    columns = mask.shape[1]
    used = np.flatnonzero(mask.any(axis=0))
    first = int(used[0]) if len(used) else columns
    return first if first and 4 * first >= columns else 0


def static_rows(state: OnnxState, index: np.ndarray, shared: int, *, inputs_changed: bool
                ) -> np.ndarray | None:
    """The old mask/static row of each new one when the new state's rows ``index`` (axis 0 of
    the old arrays) share them in groups of ``shared``: ``(len(index) / shared,)``, or None
    when they stay as they are."""
    if not inputs_changed and shared == state.group:
        return None
    rows = index[::shared] // state.group
    if len(rows) == len(state.mask) and (rows == np.arange(len(rows))).all():
        return None
    return rows


def take_rows(arrays: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``index`` (axis 0) of every array, as new arrays."""
    return {name: np.take(value, index, axis=0) for name, value in arrays.items()}


def _not_encoded(spec: StateSpec) -> bool:
    """Whether carried state starts without the encoder (an in-place buffer, an empty cache)."""
    return spec.in_place or spec.init == "empty"


def scatter_rows(parts: list[np.ndarray], rows: list[np.ndarray], axis: int | None = None,
                 size: int = 0) -> np.ndarray:
    """One array whose rows ``rows[i]`` are ``parts[i]`` (axis 0), in a single copy; with
    ``axis``, parts narrower than ``size`` along it fill its first entries (zeros after)."""
    first = parts[0]
    shape = [sum(len(index) for index in rows), *first.shape[1:]]
    if axis is not None:
        shape[axis] = size
    out = np.zeros(shape, dtype=first.dtype)
    for part, index in zip(parts, rows, strict=True):
        target: list[slice | np.ndarray] = [index] + [slice(None)] * (out.ndim - 1)
        if axis is not None:
            target[axis] = slice(0, part.shape[axis])
        out[tuple(target)] = part
    return out


def pad_to(array: np.ndarray, axis: int, size: int, *, left: bool = False) -> np.ndarray:
    """Zero-pad ``array`` along ``axis`` to ``size`` (on the right, or the left)."""
    missing = size - array.shape[axis]
    if missing <= 0:
        return array
    widths = [(0, 0)] * array.ndim
    widths[axis] = (missing, 0) if left else (0, missing)
    return np.pad(array, widths)
