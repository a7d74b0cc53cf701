"""The model protocol (``encode`` / ``step`` / ``reorder``) over ONNX Runtime sessions.

The decoder's state is a :class:`~inference.kv_cache.KVCache`, opaque to the search.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inference.bundle import Manifest, StateSpec
from inference.kv_cache import CacheLayout, KVCache, Memory, first_capacity, new_origin
from inference.memory import HostMemory
from inference.search import Candidates, top_k

ENCODE_ROWS = 16  # rows per encoder call: short inputs stop paying for long ones' padding


class OnnxModel:
    """``encode`` / ``step`` / ``step_top_k`` / ``reorder`` over an encoder and a decoder
    session, with the state's buffers in ``memory`` (host by default)."""

    def __init__(self, manifest: Manifest, encoder: Any, decoder: Any,
                 memory: Memory | None = None) -> None:
        self.manifest = manifest
        self.encoder = encoder
        self.decoder = decoder
        self.memory: Memory = memory or HostMemory()
        contract = manifest.decoder
        self.layout = CacheLayout.of(contract, manifest.max_positions)
        self.encoder_names = [spec.name for spec in manifest.encoder_outputs]
        self.state_specs = contract.state
        # state outputs other than the cache mask's, whose new column the cache writes
        self.state_outputs = {s.output: s.input for s in contract.state
                              if s.input != contract.cache_mask}
        self.bound = {s.output for s in contract.state if s.graph_writes}
        self.top_k = contract.top_k
        self.steps = 0  # decoder calls, for metrics

    @property
    def joinable(self) -> bool:
        """Whether :meth:`join` can append rows that started at another step."""
        return self.manifest.decoder.joinable

    def encode(self, ids: np.ndarray, mask: np.ndarray, rows_per_call: int = ENCODE_ROWS, *,
               max_length: int | None = None) -> KVCache:
        """Run the encoder on right-padded ``(rows, src_len)`` ids and build the step-0 state.

        Rows are encoded in groups of ``rows_per_call`` similar lengths, each cut to its own
        longest row, and each group's outputs written at its rows' places in one buffer per
        tensor (padded to ``src_len``, masked). ``max_length`` (the most tokens any row may
        generate) sizes the key/value buffers (``kv_cache.first_capacity``)."""
        columns = first_capacity(max_length)
        lengths = mask.sum(axis=1)
        order = np.argsort(-lengths, kind="stable")
        groups = [order[start : start + rows_per_call]
                  for start in range(0, len(ids), rows_per_call)]
        if len(groups) == 1:
            groups = [np.arange(len(ids))]
        outputs = []
        for rows in groups:
            width = max(1, int(lengths[rows].max())) if len(groups) > 1 else ids.shape[1]
            outputs.append(self._run_encoder(ids[rows, :width], mask[rows, :width]))
        contract = self.manifest.decoder
        static = {spec.input: scatter_rows([out[spec.source] for out in outputs], groups,
                                           self.layout.src_axes[spec.input], ids.shape[1])
                  for spec in contract.static}
        carried = {spec.input: self._initial(spec, len(ids), columns) if spec.init == "empty"
                   else scatter_rows([out[spec.init.split(":", 1)[1]] for out in outputs],
                                     groups)
                   for spec in self.state_specs}
        cache_mask = carried.pop(contract.cache_mask) if contract.cache_mask else None
        upload = self.memory.upload
        return KVCache(self.layout, self.memory, mask,
                       {name: upload(value) for name, value in static.items()},
                       {name: upload(value) for name, value in carried.items()},
                       cache_mask, new_origin(len(ids)))

    def _run_encoder(self, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        """The encoder's outputs by name for right-padded ``(rows, src_len)`` ids."""
        return dict(zip(self.encoder_names,
                        self.encoder.run(None, {"input_ids": ids, "attention_mask": mask}),
                        strict=True))

    @staticmethod
    def _initial(spec: StateSpec, rows: int, columns: int) -> np.ndarray:
        """Zeros of ``spec``'s shape: ``rows`` rows, ``columns`` entries on its capacity axis."""
        shape = [rows if d == "batch" else columns if isinstance(d, str) else d
                 for d in spec.shape]
        return np.zeros(shape, dtype=spec.dtype)

    def _run(self, tokens: np.ndarray, state: KVCache, outputs: list[str], k: int | None
             ) -> list[np.ndarray]:
        """One decoder call: ``outputs`` (host, in the search's row order); the state's
        buffers written in place and its other state replaced."""
        state.make_room()
        host = state.host_feeds(tokens)
        head = self.manifest.decoder.top_k  # fed even when unused: it may have no default
        if head is not None:
            host[head.input] = np.array([k or 1], np.int64)
        found, carried = self.memory.run(self.decoder, host, {**state.static, **state.carried},
                                         outputs, self.state_outputs, self.bound)
        state.advance(carried)
        self.steps += 1
        return [state.in_search_order(value) for value in found]

    def step(self, tokens: np.ndarray, state: KVCache) -> tuple[np.ndarray, KVCache]:
        """``(rows,)`` tokens -> ``(rows, vocab)`` log-probs and the next state."""
        (log_probs,) = self._run(tokens, state, [self.manifest.decoder.log_probs], None)
        return log_probs, state

    def step_top_k(self, tokens: np.ndarray, state: KVCache, k: int
                   ) -> tuple[Candidates, KVCache]:
        """``(rows,)`` tokens -> each row's ``k`` best log-probs and ids ``(rows, k)``, best
        first (ties: lower id first), from the graph's top-k head when it has one."""
        if self.top_k is None:
            log_probs, state = self.step(tokens, state)
            return top_k(log_probs, k), state
        k = min(k, self.manifest.vocab_size)
        values, ids = self._run(tokens, state, [self.top_k.values, self.top_k.indices], k)
        return Candidates(values, ids), state

    def reorder(self, state: KVCache, index: np.ndarray) -> KVCache:
        """The search's rows ``index`` (axis 0) of the state."""
        return state.reorder(index)

    def join(self, running: KVCache, joining: KVCache) -> KVCache:
        """``running``'s rows then ``joining``'s (continuous batching)."""
        if not self.joinable:
            raise ValueError(f"{self.manifest.name}: the decoder's cache has no mask; "
                             "re-export the bundle with `python -m training.export`")
        return running.join(joining)


def scatter_rows(parts: list[np.ndarray], rows: list[np.ndarray], axis: int | None = None,
                 size: int = 0) -> np.ndarray:
    """One array whose rows ``rows[i]`` are ``parts[i]`` (axis 0), in a single copy; with
    ``axis``, parts narrower than ``size`` along it fill its first entries (zeros after)."""
    first = parts[0]
    if len(parts) == 1 and (axis is None or first.shape[axis] == size):
        return first
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
