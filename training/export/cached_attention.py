"""One decoder step's self-attention over an in-place key/value buffer, exported as ONNX
Runtime's ``com.microsoft.GroupQueryAttention`` (with as many key/value heads as query heads it
is plain multi-head attention).

The node reads only each row's own entries (its length, ``seqlens_k``) and writes the step's
key and value at that column; when the engine binds the present outputs to the past buffers'
memory it does so in place, so neither the unused columns of the buffer are read nor the new
entries written by the host (0.23-0.37 against 0.55-0.65 ms per layer at 64 rows and 32
columns).

PyTorch sees a custom op (:func:`cached_attention`) whose reference implementation gives the
same results, so export parity is checked as for every other graph; :data:`TRANSLATIONS` maps
it to the ONNX node for ``torch.onnx.export``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import onnx
import onnxscript
import torch
from onnx.defs import OpSchema
from onnxscript import opset20
from torch import Tensor

DOMAIN = "com.microsoft"
op: Any = opset20  # traced by the exporter: Python lists become constants


def _register_schema() -> None:
    """onnxscript builds nodes from their schema; the onnx package has none for ONNX Runtime's
    contrib ops, so describe the inputs and attributes the export uses."""
    if onnx.defs.has("GroupQueryAttention", DOMAIN):
        return
    formal = OpSchema.FormalParameter
    onnx.defs.register_schema(OpSchema(
        "GroupQueryAttention", DOMAIN, 1,
        inputs=[formal("query", "T"), formal("key", "T"), formal("value", "T"),
                formal("past_key", "T"), formal("past_value", "T"), formal("seqlens_k", "M"),
                formal("total_sequence_length", "M")],
        outputs=[formal("output", "T"), formal("present_key", "T"),
                 formal("present_value", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], ""),
                          ("M", ["tensor(int32)"], "")],
        attributes=[OpSchema.Attribute("num_heads", OpSchema.AttrType.INT, ""),
                    OpSchema.Attribute("kv_num_heads", OpSchema.AttrType.INT, "")]))


_register_schema()
_CONTRIB = onnxscript.values.Opset(DOMAIN, 1)


@torch.library.custom_op("translation_engine::cached_attention", mutates_args=())
def cached_attention(query: Tensor, key: Tensor, value: Tensor, past_key: Tensor,
                     past_value: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One step: ``query``, ``key``, ``value`` ``(B, H*K)``; buffers ``(B, H, C, K)`` whose
    first ``lengths[b]`` ``(B,)`` entries are row ``b``'s (``lengths < C``). Returns the
    context ``(B, H*K)`` (scaled dot-product attention over the row's entries and the new one)
    and the buffers with the new key and value written at column ``lengths[b]``."""
    rows, heads, capacity, size = past_key.shape
    at = lengths.long()
    present_key, present_value = past_key.clone(), past_value.clone()
    present_key[torch.arange(rows), :, at] = key.view(rows, heads, size)
    present_value[torch.arange(rows), :, at] = value.view(rows, heads, size)
    scores = torch.matmul(query.view(rows, heads, 1, size) * size ** -0.5,
                          present_key.transpose(2, 3))
    visible = torch.arange(capacity)[None, :] <= at[:, None]  # (B, C)
    scores = scores.masked_fill(~visible[:, None, None, :], float("-inf"))
    context = torch.matmul(torch.softmax(scores, dim=-1), present_value)
    return context.reshape(rows, heads * size), present_key, present_value


@cached_attention.register_fake
def _(query: Tensor, key: Tensor, value: Tensor, past_key: Tensor, past_value: Tensor,
      lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return query.new_empty(query.shape), torch.empty_like(past_key), torch.empty_like(past_value)


def _as_onnx(query: Any, key: Any, value: Any, past_key: Any, past_value: Any,
             lengths: Any) -> tuple[Any, Any, Any]:
    """:func:`cached_attention` as one ``GroupQueryAttention`` node (one query position; the
    whole buffer is the total sequence length)."""
    heads = past_key.shape[1]
    step = [op.Unsqueeze(x, [1]) for x in (query, key, value)]  # (B, 1, H*K)
    capacity = op.Squeeze(op.Slice(op.Shape(past_key), [2], [3]), [0])
    context, present_key, present_value = _CONTRIB.GroupQueryAttention(
        *step, past_key, past_value, op.Cast(lengths, to=onnx.TensorProto.INT32),
        op.Cast(capacity, to=onnx.TensorProto.INT32), num_heads=heads, kv_num_heads=heads,
        _outputs=3)
    return op.Squeeze(context, [1]), present_key, present_value


TRANSLATIONS: dict[Callable[..., Any], Callable[..., Any]] = {
    torch.ops.translation_engine.cached_attention.default: _as_onnx}
