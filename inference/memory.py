"""Where the decoder state's buffers live, and the few operations the cache needs on them.

:class:`HostMemory` keeps numpy arrays and moves rows in place (``host_rows``).
:class:`OrtMemory` keeps ONNX Runtime ``OrtValue`` s on a device (``cuda``, or ``cpu`` in the
tests) and runs every step with IO binding, so the caches never cross to the host: gathering,
joining and resizing run as one-node ONNX graphs on the same device. Both write the cache the
same way: the decoder's ``GroupQueryAttention`` writes each step's keys and values into the
buffer that is bound as both its past input and its present output.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import onnxruntime as ort

from inference import host_rows
from inference.session import session_options

Buffer = Any  # np.ndarray in HostMemory, ort.OrtValue in OrtMemory
# Fewer rows than this run without IO binding on the host (ONNX Runtime then returns copies of
# the caches the graph writes): binding ~40 inputs costs more than copying a few rows' caches.
BIND_MIN_ROWS = 8
GRAPH_OPSET = 18
GRAPH_IR_VERSION = 9
ELEMENT_TYPES = {f"tensor({name})": np.dtype(dtype) for name, dtype in (
    ("float", "float32"), ("float16", "float16"), ("double", "float64"), ("int64", "int64"),
    ("int32", "int32"), ("bool", "bool"))}


class HostMemory:
    """Buffers are numpy arrays; rows move inside their buffers."""

    moves_in_place = True

    def upload(self, array: np.ndarray) -> np.ndarray:
        return array

    def download(self, buffer: np.ndarray) -> np.ndarray:
        return buffer

    def shape(self, buffer: np.ndarray) -> tuple[int, ...]:
        return tuple(buffer.shape)

    def take(self, buffer: np.ndarray, source: np.ndarray, *, axis: int | None = None,
             lengths: np.ndarray | None = None, in_place: bool = False) -> np.ndarray:
        """Rows ``source`` (axis 0); in place (``host_rows.move_rows``) or into a new buffer;
        of a grow ``axis`` only each source row's first ``lengths`` entries are copied."""
        move = host_rows.move_rows if in_place else host_rows.gather_rows
        return move(buffer, source, axis=axis, lengths=lengths)

    def append(self, buffer: np.ndarray, part: np.ndarray, axis: int | None) -> np.ndarray:
        return host_rows.append_rows(buffer, [part], axis)

    def resize(self, buffer: np.ndarray, axis: int, size: int) -> np.ndarray:
        return host_rows.resize_axis(buffer, axis, size)

    def run(self, session: Any, host: dict[str, np.ndarray], values: dict[str, np.ndarray],
            host_outputs: list[str], state_outputs: dict[str, str], bound: set[str]
            ) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
        """One decoder call: ``host_outputs`` in order, and the state outputs by their input's
        name (``state_outputs``: output -> input). From ``BIND_MIN_ROWS`` rows on, the
        ``bound`` outputs are bound to their input's buffer and come back as that buffer;
        otherwise ONNX Runtime returns its copy of it with the step's entries written."""
        feeds = {**host, **values}
        names = [*host_outputs, *state_outputs]
        buffers = {name: values[state_outputs[name]] for name in bound}
        if len(host["input_ids"]) < BIND_MIN_ROWS or not buffers or not all(
                buffer.flags.c_contiguous for buffer in buffers.values()):
            outputs = list(session.run(names, feeds))
        else:
            binding = session.io_binding()
            for name, value in feeds.items():
                binding.bind_cpu_input(name, np.ascontiguousarray(value))
            for name in names:
                buffer = buffers.get(name)
                if buffer is None:
                    binding.bind_output(name, "cpu")
                else:
                    binding.bind_output(name, "cpu", 0, buffer.dtype, list(buffer.shape),
                                        buffer.ctypes.data)
            session.run_with_iobinding(binding)
            outputs = [buffers[name] if name in buffers else value.numpy()
                       for name, value in zip(names, binding.get_outputs(), strict=True)]
        count = len(host_outputs)
        return outputs[:count], dict(zip(state_outputs.values(), outputs[count:], strict=True))


class OrtMemory:
    """Buffers are ``OrtValue`` s on ``device``; every step runs with IO binding."""

    moves_in_place = False

    def __init__(self, device: str, providers: list[str], threads: int | None = None) -> None:
        self.device = device
        self.providers = providers
        self.threads = threads
        self._sessions: dict[tuple[str, str], ort.InferenceSession] = {}

    def upload(self, array: np.ndarray) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.device, 0)

    def download(self, buffer: ort.OrtValue) -> np.ndarray:
        return np.asarray(buffer.numpy())

    def shape(self, buffer: ort.OrtValue) -> tuple[int, ...]:
        return tuple(buffer.shape())

    def take(self, buffer: ort.OrtValue, source: np.ndarray, *, axis: int | None = None,
             lengths: np.ndarray | None = None, in_place: bool = False) -> ort.OrtValue:
        """Rows ``source`` (axis 0) in a new value on the device."""
        index = np.asarray(source, dtype=np.int64)
        return self._run("gather", buffer, {"index": index})

    def append(self, buffer: ort.OrtValue, part: ort.OrtValue, axis: int | None
               ) -> ort.OrtValue:
        """``buffer``'s rows then ``part``'s, the narrower zero-padded on the right of ``axis``."""
        old, new = self.shape(buffer), self.shape(part)
        width = 0 if axis is None else max(old[axis], new[axis])
        return self._run("join", buffer, {"pads": _pads(old, axis, width),
                                          "new_pads": _pads(new, axis, width)}, part)

    def resize(self, buffer: ort.OrtValue, axis: int, size: int) -> ort.OrtValue:
        """The same rows with ``size`` entries along ``axis`` (cut, or zero-padded)."""
        return self._run("pad", buffer, {"pads": _pads(self.shape(buffer), axis, size)})

    def run(self, session: Any, host: dict[str, np.ndarray], values: dict[str, ort.OrtValue],
            host_outputs: list[str], state_outputs: dict[str, str], bound: set[str]
            ) -> tuple[list[np.ndarray], dict[str, ort.OrtValue]]:
        """As :meth:`HostMemory.run`, always bound: the ``bound`` outputs are written into
        their inputs' values, the other state outputs stay on the device."""
        binding = session.io_binding()
        for name, array in host.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for name, value in values.items():
            binding.bind_ortvalue_input(name, value)
        for name in host_outputs:
            binding.bind_output(name, "cpu")
        for name, source in state_outputs.items():
            if name in bound:
                binding.bind_ortvalue_output(name, values[source])
            else:
                binding.bind_output(name, self.device)
        session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        count = len(host_outputs)
        state = {source: values[source] if name in bound else value for (name, source), value
                 in zip(state_outputs.items(), outputs[count:], strict=True)}
        return [value.numpy() for value in outputs[:count]], state

    def _run(self, op: str, buffer: ort.OrtValue, host: dict[str, np.ndarray],
             part: ort.OrtValue | None = None) -> ort.OrtValue:
        session = self._session(op, buffer.data_type())
        binding = session.io_binding()
        binding.bind_ortvalue_input("x", buffer)
        if part is not None:
            binding.bind_ortvalue_input("new", part)
        for name, array in host.items():
            binding.bind_cpu_input(name, array)
        binding.bind_output("y", self.device)
        session.run_with_iobinding(binding)
        return binding.get_outputs()[0]

    def _session(self, op: str, data_type: str) -> ort.InferenceSession:
        key = (op, data_type)
        if key not in self._sessions:
            model = row_graph(op, ELEMENT_TYPES[data_type])
            self._sessions[key] = ort.InferenceSession(
                model.SerializeToString(), session_options(self.threads),
                providers=self.providers)
        return self._sessions[key]


def _pads(shape: tuple[int, ...], axis: int | None, width: int) -> np.ndarray:
    """ONNX ``Pad`` pads ``(2 * rank,)`` that bring ``shape`` to ``width`` along ``axis`` (on
    the right; negative: cut)."""
    pads = np.zeros(2 * len(shape), dtype=np.int64)
    if axis is not None:
        pads[axis + len(shape)] = width - shape[axis]
    return pads


def row_graph(op: str, dtype: np.dtype[Any]) -> Any:
    """A one-tensor ONNX graph ``x -> y``: ``gather`` (rows ``index``), ``pad`` (``pads``, ONNX
    ``Pad``'s ``(2 * rank,)`` form) or ``join`` (``Concat(Pad(x, pads), Pad(new, new_pads))``
    on axis 0)."""
    try:
        onnx = importlib.import_module("onnx")
    except ImportError:
        raise ImportError("IO binding needs the `onnx` package: install it (`pip install "
                          "onnx`, part of the `gpu` extra)") from None
    helper, int64 = onnx.helper, onnx.TensorProto.INT64
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    tensor = helper.make_tensor_value_info
    inputs = [tensor("x", elem, None)]
    if op == "gather":
        inputs.append(tensor("index", int64, ["n"]))
        nodes = [helper.make_node("Gather", ["x", "index"], ["y"], axis=0)]
    elif op == "pad":
        inputs.append(tensor("pads", int64, None))
        nodes = [helper.make_node("Pad", ["x", "pads"], ["y"])]
    else:
        inputs += [tensor("new", elem, None), tensor("pads", int64, None),
                   tensor("new_pads", int64, None)]
        nodes = [helper.make_node("Pad", ["x", "pads"], ["old"]),
                 helper.make_node("Pad", ["new", "new_pads"], ["added"]),
                 helper.make_node("Concat", ["old", "added"], ["y"], axis=0)]
    graph = helper.make_graph(nodes, op, inputs, [tensor("y", elem, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", GRAPH_OPSET)])
    model.ir_version = GRAPH_IR_VERSION
    return model
