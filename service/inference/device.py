"""Decoder state kept in ONNX Runtime memory between steps (IO binding).

:class:`DeviceModel` implements the search's decoder protocol (``step``, ``step_top_k``,
``reorder``) over an :class:`OnnxModel`, but holds the encoder outputs and the carried state
(key/value caches, RNN h/c) as ``OrtValue`` s on the session's device instead of numpy arrays.
Every step binds them as inputs and leaves the new state where the decoder wrote it; beam
reordering and batch compaction gather rows with a one-node ONNX graph (:class:`RowGather`) on
the same device. Per step, only token ids, the source mask, the top-k request and each row's
candidates (or log-probs) cross between host and device; the encoder outputs are uploaded
once per batch (``OnnxModel.encode`` returns them on the host). With CUDA this removes the
per-step host round trip of the cache; on the CPU it runs the same code over host memory
(zero-copy ``OrtValue`` s), which is how the tests check it against the numpy path.

Continuous batching (``service.inference.continuous``) runs over this class too: joining rows
are padded and appended, and caches trimmed, by the small graphs of ``device_rows``
(:meth:`DeviceModel.select_and_join`, :meth:`DeviceModel.trim_cache`,
:meth:`DeviceModel.new_slab`): neither the caches nor the encoder outputs pass through the
host (a trim reads the cache mask there, ``(rows, columns)`` int64).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.bundle import BundleError, Manifest
from service.inference.device_rows import (
    AxisSlice,
    DeviceSlab,
    JoinRows,
    RowGather,
    Values,
    onnx_module,
    rows_of,
)
from service.inference.onnx_decoder import OnnxModel, OnnxState, cache_trim_start, static_rows
from service.inference.search import Candidates, top_k
from service.inference.session import CUDA

log = logging.getLogger(__name__)


def resolve_io_binding(manifest: Manifest, providers: list[str], requested: bool | None
                       ) -> bool:
    """Whether to keep the decoder state on the device: by default when CUDA is among
    ``providers``. Bundles with in-place caches (``--cache in-place``, the default export) are
    served from host memory: their cache is written by the host, which this module does not
    do on the device."""
    if not manifest.decoder.in_place:
        return CUDA in providers if requested is None else requested
    if requested:
        raise BundleError(f"bundle {manifest.name}: IO binding needs a cache grown by the graph; "
                          "re-export it with `python -m training.export --cache concat` or set "
                          "TRANSLATE_IO_BINDING=false")
    if CUDA in providers:
        log.warning("%s: in-place cache, so the decoder state is kept on the host (export with "
                    "`--cache concat` to keep it on the GPU)", manifest.name)
    return False


def device_of(provider: str) -> str:
    """The ``OrtValue`` device type of an execution provider's memory."""
    return "cuda" if provider == CUDA else "cpu"


def with_required_input(path: Path, name: str) -> bytes:
    """The model at ``path`` with the initializer ``name`` removed, so that the graph input of
    that name must be fed. IO binding cannot bind an input that has an initializer (ONNX
    Runtime's "overridable initializer"), which is how bundles give ``top_k`` its default."""
    model = onnx_module().load(str(path))
    kept = [init for init in model.graph.initializer if init.name != name]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return model.SerializeToString()


class DeviceModel:
    """The decoder protocol over an :class:`OnnxModel` with the state on the device.

    States passed in and out hold ``OrtValue`` s in ``static`` and ``carried`` (use
    :meth:`upload` on what ``OnnxModel.encode`` returns); ``mask`` stays a numpy array.
    """

    def __init__(self, model: OnnxModel, providers: list[str], threads: int | None = None
                 ) -> None:
        self.model = model
        self.providers = providers
        self.threads = threads
        self.device = device_of(model.decoder.get_providers()[0])
        self._carried_gather: RowGather | None = None
        self._static_gather: RowGather | None = None
        self._graphs: _JoinGraphs | None = None

    @property
    def grouped_static(self) -> bool:
        """Whether an input's beams share one static row (``OnnxModel.grouped_static``)."""
        return self.model.grouped_static

    @property
    def joinable(self) -> bool:
        """Whether rows that started at another step can join (``OnnxModel.joinable``)."""
        return self.model.joinable

    def upload(self, state: OnnxState) -> OnnxState:
        """The same state with its static and carried tensors as device ``OrtValue`` s."""
        if self._static_gather is None:
            self._build_gathers(state)
        return OnnxState(state.mask, self._to_device(state.static),
                         self._to_device(state.carried), state.order, state.group)

    def step(self, tokens: np.ndarray, state: OnnxState) -> tuple[np.ndarray, OnnxState]:
        """``(rows,)`` tokens -> ``(rows, vocab)`` log-probs (host) and the next state."""
        log_probs, carried = self._run(tokens, state, [self.model.manifest.decoder.log_probs])
        return log_probs[0], self._next(state, carried)

    def step_top_k(self, tokens: np.ndarray, state: OnnxState, k: int
                   ) -> tuple[Candidates, OnnxState]:
        """Each row's ``k`` best log-probs and ids ``(rows, k)`` (host), best first."""
        top = self.model.top_k
        if top is None:
            log_probs, state = self.step(tokens, state)
            return top_k(log_probs, k), state
        k_feed = {top.input: np.array([min(k, self.model.manifest.vocab_size)], np.int64)}
        (values, ids), carried = self._run(tokens, state, [top.values, top.indices], k_feed)
        return Candidates(values, ids), self._next(state, carried)

    def reorder(self, state: OnnxState, index: np.ndarray, *, inputs_changed: bool = True,
                group: int = 1) -> OnnxState:
        """Gather rows of the carried state (and of the mask and static tensors unless only
        beams of the same inputs were reordered), on the device; groups of ``group`` rows
        share one static row when the graph allows it (``OnnxState.group``)."""
        assert self._carried_gather is not None and self._static_gather is not None
        shared = group if self.model.grouped_static else 1
        carried = self._carried_gather(state.carried, index)
        rows = static_rows(state, index, shared, inputs_changed=inputs_changed)
        if rows is None:
            return OnnxState(state.mask, state.static, carried, group=shared)
        return OnnxState(np.take(state.mask, rows, axis=0),
                         self._static_gather(state.static, rows), carried, group=shared)

    def place_rows(self, parents: np.ndarray, group: int, blocks: np.ndarray | None = None
                   ) -> tuple[None, np.ndarray]:
        """Every row is gathered (no in-place caches here): ``(None, parents)``."""
        return None, parents

    def select_and_join(self, carried: Values, index: np.ndarray | None,
                        joining: list[Values]) -> Values:
        """``OnnxModel.select_and_join`` on the device: rows ``index`` of ``carried`` (all when
        None), then each joining part, caches left-padded (masked) to the wider side."""
        if not joining:
            return carried if index is None else self._gathers()[0](carried, index)
        join = self._join_graphs().carried
        rows = np.arange(rows_of(carried)) if index is None else index
        for part in joining:
            carried = join(carried, rows, part)
            rows = np.arange(rows_of(carried))
        return carried

    def trim_cache(self, carried: Values) -> Values:
        """``OnnxModel.trim_cache`` on the device (the cache mask is read on the host)."""
        cache_mask = self.model.manifest.decoder.cache_mask
        trim = self._join_graphs().trim
        if cache_mask is None or trim is None:
            return carried
        start = cache_trim_start(carried[cache_mask].numpy())
        return trim(carried, start, np.iinfo(np.int64).max) if start else carried

    def new_slab(self) -> DeviceSlab:
        """Holder of the running rows' source mask and encoder outputs, on the device."""
        graphs = self._join_graphs()
        return DeviceSlab(graphs.static, self._gathers()[1], graphs.cut)

    def _gathers(self) -> tuple[RowGather, RowGather]:
        assert self._carried_gather is not None and self._static_gather is not None, (
            "upload a state first")
        return self._carried_gather, self._static_gather

    def _join_graphs(self) -> _JoinGraphs:
        if self._graphs is None:
            self._graphs = _JoinGraphs(self.model, self.providers, self.threads, self.device)
        return self._graphs

    def _run(self, tokens: np.ndarray, state: OnnxState, host_outputs: list[str],
             extra: dict[str, np.ndarray] | None = None
             ) -> tuple[list[np.ndarray], list[ort.OrtValue]]:
        """One decoder call: ``host_outputs`` as numpy, the state outputs as device values."""
        binding = self.model.decoder.io_binding()
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(tokens.reshape(-1, 1)))
        binding.bind_cpu_input("encoder_attention_mask", state.mask)
        for name, value in {**self.model.step_feeds, **(extra or {})}.items():
            binding.bind_cpu_input(name, value)
        for name, ortvalue in (*state.static.items(), *state.carried.items()):
            binding.bind_ortvalue_input(name, ortvalue)
        for name in host_outputs:
            binding.bind_output(name, "cpu")
        for spec in self.model.state_specs:
            binding.bind_output(spec.output, self.device)
        self.model.decoder.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        count = len(host_outputs)
        return [value.numpy() for value in outputs[:count]], list(outputs[count:])

    def _next(self, state: OnnxState, carried: list[ort.OrtValue]) -> OnnxState:
        self.model.steps += 1
        names = (spec.input for spec in self.model.state_specs)
        return OnnxState(state.mask, state.static, dict(zip(names, carried, strict=True)),
                         group=state.group)

    def _to_device(self, arrays: dict[str, np.ndarray]) -> dict[str, ort.OrtValue]:
        return {name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value), self.device)
                for name, value in arrays.items()}

    def _build_gathers(self, state: OnnxState) -> None:
        carried = {name: value.dtype for name, value in state.carried.items()}
        static = {name: value.dtype for name, value in state.static.items()}
        self._carried_gather = RowGather(carried, self.providers, self.threads, self.device)
        self._static_gather = RowGather(static, self.providers, self.threads, self.device)


class _JoinGraphs:
    """The ``device_rows`` graphs continuous batching needs for one model: joining carried
    state (caches left-padded) and static tensors (right-padded), and cutting either axis."""

    def __init__(self, model: OnnxModel, providers: list[str], threads: int | None,
                 device: str) -> None:
        decoder = model.manifest.decoder
        carried = {spec.input: np.dtype(spec.dtype) for spec in decoder.state}
        static = {spec.input: np.dtype(spec.dtype) for spec in decoder.static}
        grow: dict[str, int | None] = dict(model.grow_axes)
        src: dict[str, int | None] = dict(model.src_axes)
        self.carried = JoinRows(carried, grow, "left", providers, threads, device)
        self.static = JoinRows(static, src, "right", providers, threads, device)
        growing = {name: (carried[name], axis) for name, axis in grow.items() if axis is not None}
        # an RNN's state has no axis to trim (and ONNX Runtime refuses an empty graph)
        self.trim = AxisSlice(growing, providers, threads, device) if growing else None
        self.cut = AxisSlice({name: (static[name], axis) for name, axis in src.items()
                              if axis is not None}, providers, threads, device)
