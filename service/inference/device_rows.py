"""Rows reordered, joining and leaving a batch whose tensors live on the device (IO binding,
continuous batching): small ONNX graphs run by the session's provider, so that neither a join
nor a departure copies the key/value caches or the encoder outputs through the host.

- :class:`RowGather`: rows of several tensors selected by one index (beam reordering, batch
  compaction; ``DeviceModel``).
- :class:`JoinRows`: running rows selected by an index, then the joining rows, each padded
  with zeros along its tensor's pad axis to the wider of the two (caches on the left,
  encoder outputs on the right; the padding is masked).
- :class:`AxisSlice`: a range of each tensor's pad axis (cache columns that are padding for
  every row, encoder positions past every live source).
- :class:`DeviceSlab`: :class:`~service.inference.slab.StaticSlab`'s interface (source
  mask and encoder outputs of the running rows) over device tensors.

On the CPU the same graphs run over host memory, which is how the tests compare this path
with the numpy one (tests/service/inference/test_device_rows.py, test_continuous.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import onnxruntime as ort

from service.inference.session import session_options

if TYPE_CHECKING:
    import onnx

GRAPH_OPSET = 18
GRAPH_IR_VERSION = 9
Side = Literal["left", "right"]
Values = dict[str, ort.OrtValue]


def onnx_module() -> ModuleType:
    """The ``onnx`` package, which only IO binding needs (in the ``gpu`` extra, not ``serve``)."""
    try:
        return importlib.import_module("onnx")
    except ImportError:
        raise ImportError("IO binding needs the `onnx` package: install it (`pip install "
                          "onnx`, part of the `gpu` extra) or set TRANSLATE_IO_BINDING=false"
                          ) from None


def _make_model(nodes: list[Any], inputs: list[Any], outputs: list[Any], name: str,
                initializers: list[Any] | None = None) -> onnx.ModelProto:
    helper = onnx_module().helper
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=initializers or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", GRAPH_OPSET)])
    model.ir_version = GRAPH_IR_VERSION
    return model


def gather_graph(tensors: dict[str, np.dtype[Any]]) -> onnx.ModelProto:
    """``Gather(axis=0)`` of every named tensor (any rank) with one shared ``index`` ``(n,)``;
    outputs are named ``<name>.rows``."""
    package = onnx_module()
    helper = package.helper
    inputs = [helper.make_tensor_value_info("index", package.TensorProto.INT64, ["n"])]
    outputs, nodes = [], []
    for name, dtype in tensors.items():
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        inputs.append(helper.make_tensor_value_info(name, elem, None))
        outputs.append(helper.make_tensor_value_info(f"{name}.rows", elem, None))
        nodes.append(helper.make_node("Gather", [name, "index"], [f"{name}.rows"], axis=0))
    return _make_model(nodes, inputs, outputs, "gather_rows")


def join_graph(tensors: dict[str, np.dtype[Any]]) -> onnx.ModelProto:
    """Per tensor ``name``: ``name.joined = Concat(Pad(Gather(name, index), name.pads),
    Pad(name.new, name.new_pads))`` on axis 0; ``index`` ``(n,)`` is shared, the pads
    (ONNX ``Pad``'s ``(2 * rank,)`` form) are per tensor."""
    package = onnx_module()
    helper, int64 = package.helper, package.TensorProto.INT64
    inputs = [helper.make_tensor_value_info("index", int64, ["n"])]
    outputs, nodes = [], []
    for name, dtype in tensors.items():
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        inputs += [helper.make_tensor_value_info(name, elem, None),
                   helper.make_tensor_value_info(f"{name}.new", elem, None),
                   helper.make_tensor_value_info(f"{name}.pads", int64, None),
                   helper.make_tensor_value_info(f"{name}.new_pads", int64, None)]
        outputs.append(helper.make_tensor_value_info(f"{name}.joined", elem, None))
        nodes += [helper.make_node("Gather", [name, "index"], [f"{name}.kept"], axis=0),
                  helper.make_node("Pad", [f"{name}.kept", f"{name}.pads"], [f"{name}.old"]),
                  helper.make_node("Pad", [f"{name}.new", f"{name}.new_pads"],
                                   [f"{name}.padded"]),
                  helper.make_node("Concat", [f"{name}.old", f"{name}.padded"],
                                   [f"{name}.joined"], axis=0)]
    return _make_model(nodes, inputs, outputs, "join_rows")


def slice_graph(tensors: dict[str, tuple[np.dtype[Any], int]]) -> onnx.ModelProto:
    """Per tensor ``name`` (dtype, axis): ``name.sliced = Slice(name, starts, ends, [axis])``
    with ``starts`` and ``ends`` ``(1,)`` shared by all tensors."""
    package = onnx_module()
    helper, int64 = package.helper, package.TensorProto.INT64
    inputs = [helper.make_tensor_value_info("starts", int64, [1]),
              helper.make_tensor_value_info("ends", int64, [1])]
    outputs, nodes, axes = [], [], []
    for name, (dtype, axis) in tensors.items():
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        inputs.append(helper.make_tensor_value_info(name, elem, None))
        outputs.append(helper.make_tensor_value_info(f"{name}.sliced", elem, None))
        axes.append(helper.make_tensor(f"{name}.axes", int64, [1], [axis]))
        nodes.append(helper.make_node("Slice", [name, "starts", "ends", f"{name}.axes"],
                                      [f"{name}.sliced"]))
    return _make_model(nodes, inputs, outputs, "axis_slice", axes)


def rows_of(values: Values) -> int:
    """Rows (axis 0) of a state whose tensors all have them."""
    return int(next(iter(values.values())).shape()[0])


class BoundGraph:
    """A session over one of the graphs above, run with IO binding on ``device``."""

    def __init__(self, model: onnx.ModelProto, providers: list[str], threads: int | None,
                 device: str) -> None:
        self.device = device
        self.session = ort.InferenceSession(model.SerializeToString(), session_options(threads),
                                            providers=providers)

    def run(self, host: dict[str, np.ndarray], values: Values, outputs: list[str]
            ) -> list[ort.OrtValue]:
        binding = self.session.io_binding()
        for name, array in host.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for name, value in values.items():
            binding.bind_ortvalue_input(name, value)
        for name in outputs:
            binding.bind_output(name, self.device)
        self.session.run_with_iobinding(binding)
        return list(binding.get_outputs())


def _pads(shape: list[int], axis: int | None, width: int, side: Side) -> np.ndarray:
    """ONNX ``Pad`` pads ``(2 * rank,)`` that widen ``shape`` to ``width`` along ``axis``."""
    pads = np.zeros(2 * len(shape), dtype=np.int64)
    if axis is not None:
        pads[axis if side == "left" else axis + len(shape)] = width - shape[axis]
    return pads


class RowGather:
    """Selects rows of several device tensors at once, on their device."""

    def __init__(self, tensors: dict[str, np.dtype[Any]], providers: list[str],
                 threads: int | None, device: str) -> None:
        self.names = list(tensors)
        self.graph = BoundGraph(gather_graph(tensors), providers, threads, device)

    def __call__(self, values: Values, index: np.ndarray) -> Values:
        """``values[name][index]`` for every name; ``index`` ``(n,)`` int64 on the host."""
        rows = self.graph.run({"index": np.asarray(index, dtype=np.int64)},
                              {name: values[name] for name in self.names},
                              [f"{name}.rows" for name in self.names])
        return dict(zip(self.names, rows, strict=True))


class JoinRows:
    """Rows ``index`` of running tensors followed by joining rows, on the device; each tensor
    padded with zeros along its axis in ``axes`` (None: no pad axis) to the wider of the two,
    on ``side``."""

    def __init__(self, tensors: dict[str, np.dtype[Any]], axes: dict[str, int | None],
                 side: Side, providers: list[str], threads: int | None, device: str) -> None:
        self.names, self.axes, self.side = list(tensors), axes, side
        self.graph = BoundGraph(join_graph(tensors), providers, threads, device)

    def __call__(self, running: Values, index: np.ndarray, joining: Values) -> Values:
        host: dict[str, np.ndarray] = {"index": np.asarray(index, dtype=np.int64)}
        values: Values = {}
        for name in self.names:
            old, new = running[name].shape(), joining[name].shape()
            axis = self.axes.get(name)
            width = 0 if axis is None else max(old[axis], new[axis])
            host[f"{name}.pads"] = _pads(old, axis, width, self.side)
            host[f"{name}.new_pads"] = _pads(new, axis, width, self.side)
            values[name], values[f"{name}.new"] = running[name], joining[name]
        joined = self.graph.run(host, values, [f"{name}.joined" for name in self.names])
        return dict(zip(self.names, joined, strict=True))


class AxisSlice:
    """Entries ``[start, end)`` of every tensor's axis (given per tensor), on the device."""

    def __init__(self, tensors: dict[str, tuple[np.dtype[Any], int]], providers: list[str],
                 threads: int | None, device: str) -> None:
        self.names = list(tensors)
        self.graph = BoundGraph(slice_graph(tensors), providers, threads, device)

    def __call__(self, values: Values, start: int, end: int) -> Values:
        host = {"starts": np.array([start], np.int64), "ends": np.array([end], np.int64)}
        sliced = self.graph.run(host, {name: values[name] for name in self.names},
                                [f"{name}.sliced" for name in self.names])
        return {**values, **dict(zip(self.names, sliced, strict=True))}


Gather = Callable[[Values, np.ndarray], Values]


class DeviceSlab:
    """The source mask (host, ``(rows, width)``) and encoder outputs (device) of the running
    rows, with :class:`~service.inference.slab.StaticSlab`'s interface. Joining rows
    are appended with one :class:`JoinRows` call (the narrower side padded on the right,
    masked); when inputs leave, the rows that stay are gathered into new tensors, and the
    source axis is cut once the live sources use at most half of it."""

    def __init__(self, join: JoinRows, gather: Gather, cut: AxisSlice) -> None:
        self.join, self.gather, self.cut = join, gather, cut
        self.rows = 0
        self.mask = np.zeros((0, 0), dtype=np.int64)
        self.static: Values = {}

    @property
    def width(self) -> int:
        """Source positions the decoder sees."""
        return int(self.mask.shape[1])

    def view(self) -> tuple[np.ndarray, Values]:
        """The live rows: mask ``(rows, width)`` and every static tensor."""
        return self.mask, self.static

    def append(self, mask: np.ndarray, static: Values) -> None:
        """Add rows after the live ones; ``mask`` ``(n, src_len)``."""
        if not self.rows:
            self.mask, self.static, self.rows = mask.copy(), dict(static), len(mask)
            return
        width = max(self.width, mask.shape[1])
        self.static = self.join(self.static, np.arange(self.rows), static)
        self.mask = np.concatenate([_pad_right(self.mask, width), _pad_right(mask, width)])
        self.rows = len(self.mask)

    def compact(self, source: np.ndarray, target: np.ndarray, rows: int) -> None:
        """Keep ``rows`` rows, row ``target[i]`` taking row ``source[i]``'s content."""
        index = np.arange(rows)
        index[target] = source
        self.mask, self.rows = self.mask[index], rows
        self.static = self.gather(self.static, index)
        used = np.flatnonzero(self.mask.any(axis=0))
        needed = int(used[-1]) + 1 if len(used) else 1
        if 2 * needed <= self.width:
            self.static = self.cut(self.static, 0, needed)
            self.mask = np.ascontiguousarray(self.mask[:, :needed])


def _pad_right(mask: np.ndarray, width: int) -> np.ndarray:
    return np.pad(mask, ((0, 0), (0, width - mask.shape[1])))
