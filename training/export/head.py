"""The top-k head the exporter appends to every decoder graph.

The head is one ``TopK`` node over the log-probs, with ``k`` an int64 input that defaults to 1
(an initializer that is also a graph input, so callers that do not feed it still work). The
engine then reads ``(rows, k)`` values and ids instead of copying and sorting ``(rows, vocab)``
log-probs at every step: with a 32,000-token vocabulary and 256 beam rows that is 32 MB and a
partial sort of 8 M numbers per step, in numpy.

With a large vocabulary the head is blocked: the row's maximum per block of about 128
log-probs, the best ``k`` blocks (in id order), then ``TopK`` over their entries only. The ``k``
best entries always lie in the ``k`` blocks with the best maxima (an entry outside them would
be beaten by each of those ``k`` maxima, ties going to the lower id), so the result is exactly
the plain head's, ties included; ``TopK`` over all 32,000 log-probs of 64-256 rows is what it
saves (OPUS-shape model: 1.01x greedy, 1.06x beam 4 at batch 64). Under ``BLOCKED_MIN_VOCAB``
tokens the extra nodes cost more than they save.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from inference.bundle import (
    DecoderContract,
    TopKSpec,
)
from training.errors import UserError

DECODER = "decoder.onnx"
HEAD = TopKSpec()  # the names every exported head uses


BLOCK = 128  # log-probs per block, about sqrt(32,000): both TopK passes stay small
# The blocked head costs more than it saves below this vocabulary (8,000 tokens: 0.97-0.99x).
BLOCKED_MIN_VOCAB = 16_384
BLOCKED_PREFIX = "top_k_head/"  # names of the blocked head's nodes (the plain one: "top_k_head")
Step = tuple[str, list[str], list[str], dict[str, Any]]  # op, inputs, outputs, attributes


def add_top_k_head(path: Path, log_probs: str, spec: TopKSpec = HEAD, *,
                   min_vocab: int = BLOCKED_MIN_VOCAB, required: bool = False) -> None:
    """Rewrite the ONNX file at ``path`` with ``TopK(log_probs, k)`` outputs named by
    ``spec`` (blocked from ``min_vocab`` tokens on); values keep the log-probs' element
    type. Nothing changes when the graph already has them. ``required``: ``k`` has no default
    (no initializer), so that IO binding can bind it (a decoder that writes its caches)."""
    model = onnx.load(str(path))
    if spec.values not in {o.name for o in model.graph.output}:
        with_head(model, log_probs, spec, min_vocab=min_vocab, where=path, required=required)
        save_checked(model, path)


def with_head(model: onnx.ModelProto, log_probs: str, spec: TopKSpec = HEAD, *,
              min_vocab: int = BLOCKED_MIN_VOCAB, where: Path = Path(DECODER),
              required: bool = False) -> None:
    """Append the head to ``model``, read from ``where`` (see :func:`add_top_k_head`)."""
    graph = model.graph
    source = next((o for o in graph.output if o.name == log_probs), None)
    if source is None:
        raise UserError(f"{where}: the decoder has no output {log_probs!r}")
    element = source.type.tensor_type.elem_type
    vocab = static_vocab(source)
    if not required:
        graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), spec.input))
    graph.input.append(helper.make_tensor_value_info(spec.input, TensorProto.INT64, [1]))
    if vocab >= min_vocab:
        nodes, constants = blocked_head(log_probs, spec, vocab, element)
    else:
        nodes = [helper.make_node("TopK", [log_probs, spec.input], [spec.values, spec.indices],
                                  name="top_k_head", axis=-1, largest=1, sorted=1)]
        constants = []
    graph.node.extend(nodes)
    graph.initializer.extend(constants)
    graph.output.append(helper.make_tensor_value_info(spec.values, element, ["batch", "k"]))
    graph.output.append(helper.make_tensor_value_info(spec.indices, TensorProto.INT64,
                                                      ["batch", "k"]))


def save_checked(model: onnx.ModelProto, path: Path) -> None:
    """Sort ``model``'s nodes, check it and replace the file at ``path`` in one rename."""
    sort_nodes(model.graph)
    onnx.checker.check_model(model)
    temporary = path.with_suffix(".onnx.tmp")
    onnx.save(model, str(temporary))
    temporary.replace(path)


def static_vocab(log_probs: onnx.ValueInfoProto) -> int:
    """The last dimension of the log-probs output, 0 when it is not static."""
    dims = log_probs.type.tensor_type.shape.dim
    return dims[-1].dim_value if dims else 0


def block_size(vocab: int) -> int:
    """The divisor of ``vocab`` nearest ``BLOCK`` within a factor of two of it (the
    log-probs then reshape into blocks), else ``BLOCK`` (the last block is partial)."""
    divisors = [size for size in range(BLOCK // 2, 2 * BLOCK + 1) if vocab % size == 0]
    return min(divisors, key=lambda size: (abs(size - BLOCK), size), default=BLOCK)


def blocked_head(log_probs: str, spec: TopKSpec, vocab: int, element: int
                 ) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes and constants of the blocked top-k over ``(rows, vocab)`` log-probs: block
    maxima ``(rows, blocks)``, the ``min(k, blocks)`` best blocks sorted by id, their entries
    ``(rows, chosen * size)`` and ``TopK`` over those, mapped back to token ids. Columns of a
    partial last block past the vocabulary are read at the last id and masked to ``-inf``
    (chosen only after all others)."""
    size = block_size(vocab)
    blocks = -(-vocab // size)
    constant = {
        "axis": np.array([2], np.int64), "blocks": np.array([blocks], np.int64),
        "size": np.array(size, np.int64),
        "offsets": np.arange(size, dtype=np.int64).reshape(1, 1, size)}
    steps = block_maxima(log_probs, vocab, size, constant)
    steps += [
        ("Min", [spec.input, "blocks"], ["block_k"], {}),
        ("TopK", ["block_max", "block_k"], ["best_max", "best_blocks"], {"largest": 1}),
        ("TopK", ["best_blocks", "block_k"], ["chosen", "chosen_rank"], {"largest": 0}),
        ("Unsqueeze", ["chosen", "axis"], ["chosen_3d"], {}),
        ("Mul", ["chosen_3d", "size"], ["starts"], {}),
        ("Add", ["starts", "offsets"], ["columns_3d"], {}),
        ("Flatten", ["columns_3d"], ["columns"], {"axis": 1}),  # also for 0 rows
    ]
    if blocks * size == vocab:
        steps.append(("GatherElements", [log_probs, "columns"], ["candidates"], {"axis": 1}))
    else:
        constant["last"] = np.array(vocab - 1, np.int64)
        constant["minus_inf"] = np.array(-np.inf, helper.tensor_dtype_to_np_dtype(element))
        steps += [
            ("Min", ["columns", "last"], ["read"], {}),
            ("GatherElements", [log_probs, "read"], ["entries"], {"axis": 1}),
            ("LessOrEqual", ["columns", "last"], ["inside"], {}),
            ("Where", ["inside", "entries", "minus_inf"], ["candidates"], {}),
        ]
    steps += [
        ("TopK", ["candidates", spec.input], [spec.values, "positions"], {"largest": 1}),
        ("GatherElements", ["columns", "positions"], [spec.indices], {"axis": 1}),
    ]
    return head_nodes(steps, {log_probs, spec.input, spec.values, spec.indices}), [
        numpy_helper.from_array(value, BLOCKED_PREFIX + key) for key, value in constant.items()]


def block_maxima(log_probs: str, vocab: int, size: int, constant: dict[str, np.ndarray]
                 ) -> list[Step]:
    """Steps from ``(rows, vocab)`` ``log_probs`` to ``block_max`` ``(rows, blocks)``: a
    reshape into blocks and ``ReduceMax`` when ``size`` divides ``vocab``, else one
    ``MaxPool`` whose last window is partial; ``constant`` receives their constants. The pool
    reads the log-probs once, where padding them to whole blocks would copy them at every
    step (256,206 tokens, 256 rows: pad and ``ReduceMax`` 59 ms a step, the pool 35 ms)."""
    if vocab % size == 0:
        constant["shape"] = np.array([0, vocab // size, size], np.int64)
        return [("Reshape", [log_probs, "shape"], ["by_block"], {}),
                ("ReduceMax", ["by_block", "axis"], ["block_max"], {"keepdims": 0})]
    constant["channel"] = np.array([1], np.int64)
    return [("Unsqueeze", [log_probs, "channel"], ["by_channel"], {}),
            ("MaxPool", ["by_channel"], ["pooled"], {"kernel_shape": [size], "strides": [size],
                                                     "ceil_mode": 1}),
            ("Squeeze", ["pooled", "channel"], ["block_max"], {})]


def head_nodes(steps: list[Step], outside: set[str]) -> list[onnx.NodeProto]:
    """One node per step, its names under ``BLOCKED_PREFIX`` except those in ``outside``
    (the graph's own tensors); every ``TopK`` sorted."""
    nodes = []
    for op, inputs, outputs, attributes in steps:
        node = helper.make_node(
            op, [i if i in outside else BLOCKED_PREFIX + i for i in inputs],
            [o if o in outside else BLOCKED_PREFIX + o for o in outputs],
            name=BLOCKED_PREFIX + outputs[0])
        if op == "TopK":
            attributes = {**attributes, "sorted": 1}
        node.attribute.extend(helper.make_attribute(key, value)
                              for key, value in attributes.items())
        nodes.append(node)
    return nodes


def sort_nodes(graph: onnx.GraphProto) -> None:
    """Put ``graph``'s nodes in an order where each comes after the producers of its inputs
    (the ONNX checker requires it; the fp16 converter appends its input casts last), keeping
    the given order where it already is one."""
    available = {""} | {i.name for i in graph.input} | {t.name for t in graph.initializer}
    remaining = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while remaining:
        waiting = []
        for node in remaining:  # one pass places a sorted graph whole
            if available.issuperset(node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(remaining):
            raise UserError("the decoder graph has a cycle or an input nothing produces")
        remaining = waiting
    del graph.node[:]
    graph.node.extend(ordered)


def with_top_k(contract: DecoderContract) -> DecoderContract:
    """The contract with the default head recorded."""
    return replace(contract, top_k=HEAD)
