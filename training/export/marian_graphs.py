"""Export graphs for MarianMT: an encoder that also returns every decoder layer's cross-attention
keys/values (computed once per input), and one decoder step over an explicit key/value cache.

Written over the model's own modules (so any MarianMT config is honoured: activation, embedding
scale, shared or separate embeddings, final logits bias) without transformers' cache classes.
Shapes: B batch, S source length, P past length, H heads, K head dim, D model dim, V vocab.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import MarianMTModel

from training.export.cached_attention import cached_attention


def split_heads(x: Tensor, heads: int) -> Tensor:
    """``(B, T, D)`` -> ``(B, H, T, K)``."""
    batch, length, dim = x.shape
    return x.view(batch, length, heads, dim // heads).transpose(1, 2)


def attention(query: Tensor, key: Tensor, value: Tensor, bias: Tensor | None) -> Tensor:
    """Scaled dot-product attention; query ``(B, H, T, K)``, key/value ``(B, H, S, K)``,
    additive ``bias`` ``(B, 1, 1, S)`` -> ``(B, H, T, K)``."""
    scores = torch.matmul(query * query.size(-1) ** -0.5, key.transpose(2, 3))
    if bias is not None:
        scores = scores + bias
    return torch.matmul(torch.softmax(scores, dim=-1), value)


def step_heads(x: Tensor, heads: int) -> Tensor:
    """One step's ``(B, D)`` -> ``(B, H, 1, K)`` (a view: with one position no transpose)."""
    batch, dim = x.shape
    return x.view(batch, heads, 1, dim // heads)


def merge_step_heads(x: Tensor) -> Tensor:
    """One step's ``(B, H, 1, K)`` -> ``(B, H*K)``."""
    return x.reshape(x.size(0), -1)


def attend_grouped(query: Tensor, key: Tensor, value: Tensor, bias: Tensor) -> Tensor:
    """One step's attention to per-input keys/values shared by groups of rows (an input's
    beams): query ``(B, H, 1, K)`` with ``B = I * G`` rows, rows ``i*G .. i*G+G-1`` attending
    to input ``i``'s key/value ``(I, H, S, K)`` and bias ``(I, 1, 1, S)`` -> ``(B, H*K)``.
    With ``I = B`` (``G = 1``) this is plain per-row attention. Reading each input's keys and
    values once for its ``G`` beams instead of once per beam is what makes the cross-attention
    of beam search a batched GEMM rather than ``B * H`` matrix-vector products."""
    inputs = key.size(0)
    rows, heads, _, size = query.shape
    torch._check(rows % inputs == 0)
    grouped = query.reshape(inputs, rows // inputs, heads, size).transpose(1, 2)  # (I, H, G, K)
    out = attention(grouped, key, value, bias)  # (I, H, G, K)
    return out.transpose(1, 2).reshape(rows, heads * size)


class FusedLinear(nn.Module):
    """Several ``nn.Linear`` of the same input as one GEMM: ``(N, D)`` -> one ``(N, D_i)``
    output per projection. At one step's 64 rows a decoder projection streams its weights from
    memory, and one GEMM of width ``3 D`` takes 0.78 of the time of three of width ``D``; each
    output column is the same dot product, so the results do not change."""

    def __init__(self, projections: list[nn.Linear]) -> None:
        super().__init__()
        self.sizes = [p.out_features for p in projections]
        self.weight = nn.Parameter(torch.cat([p.weight.detach() for p in projections]))
        biases = [p.bias.detach() if p.bias is not None else torch.zeros(p.out_features)
                  for p in projections]
        self.bias = nn.Parameter(torch.cat(biases))

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """``(N, D)`` -> ``(N, D_i)`` for each projection."""
        return tuple(nn.functional.linear(x, self.weight, self.bias).split(self.sizes, dim=-1))


def padding_bias(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """``(B, S)`` 1/0 mask -> ``(B, 1, 1, S)`` additive bias (0 or a large negative)."""
    return ((1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min).to(dtype)


class MarianEncoderGraph(nn.Module):
    """``(input_ids, attention_mask)`` -> cross keys/values of every decoder layer."""

    def __init__(self, model: MarianMTModel) -> None:
        super().__init__()
        self.encoder = model.model.encoder
        self.decoder_layers = model.model.decoder.layers
        self.heads = model.config.encoder_attention_heads
        self.cross_heads = model.config.decoder_attention_heads
        self.self_qkv = nn.ModuleList(
            FusedLinear([layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj])
            for layer in self.encoder.layers)
        self.cross_kv = FusedLinear([proj for layer in self.decoder_layers
                                     for proj in (layer.encoder_attn.k_proj,
                                                  layer.encoder_attn.v_proj)])

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, ...]:
        """Returns ``cross_key_0, cross_value_0, ...``, each ``(B, H, S, K)``."""
        enc = self.encoder
        batch, length = input_ids.shape
        positions = enc.embed_positions.weight[:length]
        x = enc.embed_tokens(input_ids) * enc.embed_scale + positions
        # (B*S, D) between attentions: every projection is a 2-D GEMM with its bias fused
        x = x.reshape(batch * length, -1)
        bias = padding_bias(attention_mask, x.dtype)
        for layer, qkv in zip(enc.layers, self.self_qkv, strict=True):
            attn = layer.self_attn
            q, k, v = (self.heads_of(part, batch, self.heads) for part in qkv(x))
            context = attention(q, k, v, bias).transpose(1, 2).reshape(batch * length, -1)
            x = layer.self_attn_layer_norm(x + attn.out_proj(context))
            x = layer.final_layer_norm(x + layer.fc2(layer.activation_fn(layer.fc1(x))))
        return tuple(self.heads_of(part, batch, self.cross_heads) for part in self.cross_kv(x))

    @staticmethod
    def heads_of(x: Tensor, batch: int, heads: int) -> Tensor:
        """``(B*S, D)`` -> ``(B, H, S, K)``."""
        return split_heads(x.reshape(batch, -1, x.size(-1)), heads)


class MarianDecoderStepGraph(nn.Module):
    """One decoder step: new token, mask, past self K/V, cache mask, position, cross K/V ->
    log-probs, present K/V, the cache mask's new entry, the next position.

    The cache mask and the per-row position let rows that started at different steps share a
    call (continuous batching): each row's own position drives the positional embedding.

    The past K/V and mask are buffers of any capacity ``C`` whose first entries (as many as
    the row's mask ones) are the row's, and every row has a free column.
    The self-attention is :func:`cached_attention` (ONNX Runtime's ``GroupQueryAttention``):
    it reads only the row's entries and returns the K/V buffers with the step's entry written
    after them, in place when the engine binds those outputs to the inputs' memory; the step
    returns the mask's new entry ``(B, 1)`` for the host to write. Nothing is concatenated, so
    the cache is not copied (inference/kv_cache.py).

    The encoder's mask and cross K/V may have fewer rows ``I`` than the step (``B = I * G``):
    each input's ``G`` consecutive rows (its beams) share them (:func:`attend_grouped`)."""

    def __init__(self, model: MarianMTModel) -> None:
        super().__init__()
        self.decoder = model.model.decoder
        self.lm_head = model.lm_head
        # Marian's final logits bias is a buffer that training leaves at zero: adding it
        # would cost a pass over (B, V) logits per step for nothing.
        bias = model.final_logits_bias.detach().clone()
        self.register_buffer("final_logits_bias", bias if bool(bias.any()) else None)
        self.heads = model.config.decoder_attention_heads
        self.layers = len(self.decoder.layers)
        self.self_qkv = nn.ModuleList(
            FusedLinear([layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj])
            for layer in self.decoder.layers)

    def forward(self, input_ids: Tensor, encoder_attention_mask: Tensor, *state: Tensor
                ) -> tuple[Tensor, ...]:
        """input_ids ``(B, 1)``, mask ``(I, S)``, state = ``past_key_i, past_value_i`` for each
        layer, ``past_mask`` ``(B, P)`` (1 = real cache entry), ``position`` ``(B,)``, then
        ``cross_key_i, cross_value_i`` ``(I, H, S, K)`` (``B = I * G``). Returns ``(B, V)``
        log-probs, then ``present_key_i, present_value_i`` ``(B, H, C, K)`` (the buffers with
        the new entry written at each row's length), the mask's new entry ``(B, 1)`` (which the
        host writes) and the ``(B,)`` next position."""
        dec = self.decoder
        past = state[: 2 * self.layers]
        past_mask, position = state[2 * self.layers], state[2 * self.layers + 1]
        cross_kv = state[2 * self.layers + 2 :]
        # One position: the hidden state is (B, D), so every projection is a 2-D GEMM with its
        # bias fused (ONNX Runtime leaves a (B, 1, D) MatMul and its bias Add apart).
        positions = dec.embed_positions.weight[position]
        x = dec.embed_tokens(input_ids[:, 0]) * dec.embed_scale + positions
        bias = padding_bias(encoder_attention_mask, x.dtype)
        mask_out = torch.ones_like(position).unsqueeze(1)
        cache = past_mask.sum(dim=1)  # each row's entries are its first ones: their count
        presents: list[Tensor] = []
        for index, layer in enumerate(dec.layers):
            context, k, v = self.self_attend(x, index, past[2 * index], past[2 * index + 1],
                                             cache)
            presents += [k, v]
            x = layer.self_attn_layer_norm(x + layer.self_attn.out_proj(context))
            cross = layer.encoder_attn
            q = step_heads(cross.q_proj(x), self.heads)
            context = attend_grouped(q, cross_kv[2 * index], cross_kv[2 * index + 1], bias)
            x = layer.encoder_attn_layer_norm(x + cross.out_proj(context))
            x = layer.final_layer_norm(x + layer.fc2(layer.activation_fn(layer.fc1(x))))
        logits = self.lm_head(x)
        if self.final_logits_bias is not None:
            logits = logits + self.final_logits_bias
        return (torch.log_softmax(logits, dim=-1), *presents, mask_out, position + 1)

    def self_attend(self, x: Tensor, index: int, past_key: Tensor, past_value: Tensor,
                    cache: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Layer ``index``'s self-attention for the step's ``(B, D)`` input -> context
        ``(B, D)`` and the present key/value buffers ``(B, H, C, K)``. ``cache``: each row's
        length ``(B,)``."""
        q, k, v = self.self_qkv[index](x)
        return cached_attention(q, k, v, past_key, past_value, cache)
