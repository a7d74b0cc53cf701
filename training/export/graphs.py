"""Turn a :class:`Source` into two ONNX graphs and the matching state contract."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.export import Dim

from inference.bundle import DecoderContract, StateSpec, StaticSpec, TensorSpec
from training.export.cached_attention import TRANSLATIONS
from training.export.m2m100_graphs import M2M100DecoderStepGraph, M2M100EncoderGraph
from training.export.marian_graphs import MarianDecoderStepGraph, MarianEncoderGraph
from training.export.rnn_graphs import RNNDecoderStepGraph, RNNEncoderGraph, rnn_state_names
from training.export.sources import Source, is_rnn

F32, I64 = "float32", "int64"
ENCODER_INPUTS = [TensorSpec("input_ids", I64, ["batch", "src_len"]),
                  TensorSpec("attention_mask", I64, ["batch", "src_len"])]
DECODER_INPUTS = [TensorSpec("input_ids", I64, ["batch", 1]),
                  TensorSpec("encoder_attention_mask", I64, ["batch", "src_len"])]


@dataclass
class GraphPlan:
    """Torch modules to export, their contract, and example state for tracing."""

    encoder: nn.Module
    decoder: nn.Module
    encoder_outputs: list[TensorSpec]
    contract: DecoderContract

    def decoder_state_names(self) -> list[str]:
        """Decoder inputs after ``input_ids`` and the mask, in call order."""
        return [s.input for s in self.contract.state] + [s.input for s in self.contract.static]


# Opset 20 has ONNX's own ``Gelu``, which torch emits for the Transformer's activation and ONNX
# Runtime runs as one kernel. At 18 torch writes erf-GELU as five nodes (Div, Erf, Add, Mul,
# Mul) that ONNX Runtime 1.32 does not fuse back: on the OPUS-shape bench model, opset 20 is
# 1.03x as fast at greedy batch 64 and 1.04x at beam 4 batch 64, the same at batch 1.
DEFAULT_OPSET = 20
# The form of the graphs this exporter writes, recorded in ``model.json``'s metadata as
# ``export_revision`` so that cached bundles (bench.engines) know when to export again.
# 2: each attention's projections of the same input are one GEMM (marian_graphs.FusedLinear).
# 3: in-place caches are written by the graph (cached_attention: GroupQueryAttention).
# 4: a vocabulary without a block-size divisor is pooled, not padded (head.block_maxima).
EXPORT_REVISION = 4


def marian_plan(model: Any) -> GraphPlan:
    """Cross K/V from the encoder; a self-attention K/V cache along axis 2 written in place (a
    buffer of ``cache_len`` capacity in and out, the graph writing each row's new entry; the
    host writes the mask's)."""
    cfg = model.config
    heads, layers = cfg.decoder_attention_heads, cfg.decoder_layers
    head_dim = cfg.d_model // heads
    length = "cache_len"
    kv = ["batch", heads, "src_len", head_dim]
    outputs, state, static = [], [], []
    for i in range(layers):
        for part in ("key", "value"):
            outputs.append(TensorSpec(f"cross_{part}_{i}", F32, kv))
            static.append(StaticSpec(f"cross_{part}_{i}", f"cross_{part}_{i}", F32, kv))
            state.append(StateSpec(f"past_{part}_{i}", f"present_{part}_{i}", F32,
                                   ["batch", heads, length, head_dim], "empty", grow_axis=2,
                                   in_place=True, graph_writes=True))
    state += [StateSpec("past_mask", "new_mask", I64, ["batch", length], "empty", grow_axis=1,
                        in_place=True),
              StateSpec("position", "next_position", I64, ["batch"], "empty")]
    contract = DecoderContract("log_probs", state, static, list(DECODER_INPUTS),
                               cache_mask="past_mask", grouped_static=True)
    m2m = cfg.model_type == "m2m_100"  # pre-LayerNorm layers, sinusoidal positions
    encoder = (M2M100EncoderGraph if m2m else MarianEncoderGraph)(model).eval()
    decoder = (M2M100DecoderStepGraph if m2m else MarianDecoderStepGraph)(model).eval()
    return GraphPlan(encoder, decoder, outputs, contract)


def rnn_plan(model: Any) -> GraphPlan:
    """Memory is static; h (c) and the attentional feed are carried from step to step."""
    dim, layers = 2 * model.cfg.hidden_size, model.cfg.layers
    shapes = {"memory": ["batch", "src_len", dim], "h": ["batch", layers, dim],
              "c": ["batch", layers, dim], "feed": ["batch", dim]}
    names = rnn_state_names(model)
    outputs = [TensorSpec(name, F32, shapes[name]) for name in names]
    state = [StateSpec(name, f"next_{name}", F32, shapes[name], f"encoder:{name}")
             for name in names[1:]]
    static = [StaticSpec("memory", "memory", F32, shapes["memory"])]
    contract = DecoderContract("log_probs", state, static, list(DECODER_INPUTS))
    return GraphPlan(RNNEncoderGraph(model).eval(), RNNDecoderStepGraph(model).eval(), outputs,
                     contract)


def plan_for(source: Source) -> GraphPlan:
    """The graph plan of either architecture."""
    return rnn_plan(source.module) if is_rnn(source) else marian_plan(source.module)


def example_source(batch: int = 2, length: int = 5) -> tuple[Tensor, Tensor]:
    """Padded example ids ``(batch, length)`` and their mask (row 1 is shorter)."""
    ids = torch.randint(4, 20, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1:, length - 2 :] = 0
    return ids * mask, mask


def _dim(shape: list[int | str], dims: dict[str, Any]) -> dict[int, Any]:
    return {axis: dims[name] for axis, name in enumerate(shape) if isinstance(name, str)}


@contextmanager
def fresh_rnn_dispatch() -> Iterator[None]:
    """Forget the kernels cached for ``aten.lstm``/``aten.gru`` before and after an export.

    ``torch.onnx.export(dynamo=True)`` swaps in while-loop RNN decompositions (the ones that keep
    the time axis dynamic) by editing ``py_kernels`` without clearing the operator's dispatch
    cache (torch 2.13), so a second export in one process reuses the cached unrolled kernel and
    fixes ``src_len`` to the example length.
    """
    ops = (torch.ops.aten.lstm.input, torch.ops.aten.gru.input)
    for op in ops:
        op._dispatch_cache.clear()
    try:
        yield
    finally:
        for op in ops:
            op._dispatch_cache.clear()


def export_graphs(plan: GraphPlan, out: Path, *, opset: int, max_positions: int) -> None:
    """Export ``encoder.onnx`` and ``decoder.onnx`` with dynamic batch/length axes (with
    ``grouped_static``, the decoder's mask and static inputs have their own ``inputs`` axis and
    are traced with two step rows per input)."""
    dims = {"batch": Dim("batch", min=1, max=4096), "src_len": Dim("src_len", min=1, max=4096),
            "inputs": Dim("inputs", min=1, max=4096),
            "cache_len": Dim("cache_len", min=1, max=max(3, max_positions))}
    ids, mask = example_source()
    with torch.no_grad(), fresh_rnn_dispatch():
        torch.onnx.export(
            plan.encoder, (ids, mask), str(out / "encoder.onnx"), dynamo=True,
            opset_version=opset, input_names=["input_ids", "attention_mask"],
            output_names=[s.name for s in plan.encoder_outputs],
            dynamic_shapes={name: _dim(["batch", "src_len"], dims)
                            for name in ("input_ids", "attention_mask")},
            external_data=False, verbose=False)
        encoded = dict(zip([s.name for s in plan.encoder_outputs], plan.encoder(ids, mask),
                           strict=True))
        group = 2 if plan.contract.grouped_static else 1
        state = [example_state(spec, encoded, group=group) for spec in plan.contract.state]
        static = [encoded[spec.source] for spec in plan.contract.static]
        per_input = "inputs" if group > 1 else "batch"
        shapes = [s.shape for s in plan.contract.state] + [
            [per_input if d == "batch" else d for d in s.shape] for s in plan.contract.static]
        torch.onnx.export(
            plan.decoder, (ids[:, :1].repeat_interleave(group, dim=0), mask, *state, *static),
            str(out / "decoder.onnx"), dynamo=True, opset_version=opset,
            input_names=["input_ids", "encoder_attention_mask", *plan.decoder_state_names()],
            output_names=[plan.contract.log_probs, *(s.output for s in plan.contract.state)],
            dynamic_shapes={"input_ids": {0: dims["batch"]},
                            "encoder_attention_mask": _dim([per_input, "src_len"], dims),
                            "state": tuple(_dim(shape, dims) for shape in shapes)},
            custom_translation_table=TRANSLATIONS, external_data=False, verbose=False)


def example_state(spec: StateSpec, encoded: dict[str, Tensor], past: int = 3, group: int = 1
                  ) -> Tensor:
    """Tracing value of a state input: from the encoder, a random cache of ``past`` steps, or
    for int64 state the cache mask (ones; an in-place one with its last column free) or the
    position (``past``); ``group`` rows per encoded input."""
    if spec.init != "empty":
        return encoded[spec.init.split(":", 1)[1]].repeat_interleave(group, dim=0)
    batch = next(iter(encoded.values())).size(0) * group
    grows = {"cache_len"}
    shape = [int(batch if d == "batch" else past if d in grows else d) for d in spec.shape]
    if spec.dtype == I64 and grows & set(spec.shape):
        mask = torch.ones(*shape, dtype=torch.long)
        if spec.in_place:
            mask[:, -1] = 0  # an in-place buffer has a free column for the step's entry
        return mask
    if spec.dtype == I64:
        return torch.ones(*shape, dtype=torch.long) * past
    return torch.randn(*shape)
