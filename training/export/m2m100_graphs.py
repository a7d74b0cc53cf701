"""Export graphs for M2M100 and NLLB-200 (``M2M100ForConditionalGeneration``): the same two
graphs and state contract as MarianMT (:mod:`training.export.marian_graphs`), over the
model's pre-LayerNorm layers, final layer norms, scaled embeddings and sinusoidal positions,
which start at ``padding_idx + 1`` (the source is right-padded, so a token's position is its
index plus that offset; a decoder step's is its step plus it).
Shapes: B batch, S source length, H heads, K head dim, D model dim, V vocab.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import M2M100ForConditionalGeneration

from training.export.marian_graphs import (
    FusedLinear,
    MarianDecoderStepGraph,
    MarianEncoderGraph,
    attend_grouped,
    attention,
    padding_bias,
    step_heads,
)


def position_offset(model: M2M100ForConditionalGeneration) -> int:
    """Index of position 0 in the sinusoidal table (``padding_idx + 1``)."""
    pad = model.config.pad_token_id
    assert isinstance(pad, int), "M2M100 configs name their pad token"
    return pad + 1


class M2M100EncoderGraph(MarianEncoderGraph):
    """``(input_ids, attention_mask)`` -> cross keys/values of every decoder layer."""

    def __init__(self, model: M2M100ForConditionalGeneration) -> None:
        super().__init__(model)  # type: ignore[arg-type]
        self.offset = position_offset(model)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, ...]:
        """Returns ``cross_key_0, cross_value_0, ...``, each ``(B, H, S, K)``."""
        enc = self.encoder
        batch, length = input_ids.shape
        positions = enc.embed_positions.weights[self.offset : self.offset + length]
        x = (enc.embed_tokens(input_ids) + positions).reshape(batch * length, -1)  # (B*S, D)
        bias = padding_bias(attention_mask, x.dtype)
        for layer, qkv in zip(enc.layers, self.self_qkv, strict=True):
            q, k, v = (self.heads_of(part, batch, self.heads)
                       for part in qkv(layer.self_attn_layer_norm(x)))
            context = attention(q, k, v, bias).transpose(1, 2).reshape(batch * length, -1)
            x = x + layer.self_attn.out_proj(context)
            x = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
        x = enc.layer_norm(x)
        return tuple(self.heads_of(part, batch, self.cross_heads) for part in self.cross_kv(x))


class M2M100DecoderStepGraph(MarianDecoderStepGraph):
    """One decoder step; inputs, outputs and the in-place cache as
    :class:`~training.export.marian_graphs.MarianDecoderStepGraph`."""

    def __init__(self, model: M2M100ForConditionalGeneration) -> None:
        nn.Module.__init__(self)
        self.decoder = model.model.decoder
        self.lm_head = model.lm_head
        self.register_buffer("final_logits_bias", None)
        self.heads = model.config.decoder_attention_heads
        self.layers = len(self.decoder.layers)
        self.offset = position_offset(model)
        self.self_qkv = nn.ModuleList(
            FusedLinear([layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj])
            for layer in self.decoder.layers)

    def forward(self, input_ids: Tensor, encoder_attention_mask: Tensor, *state: Tensor
                ) -> tuple[Tensor, ...]:
        """See :meth:`MarianDecoderStepGraph.forward`."""
        dec = self.decoder
        past = state[: 2 * self.layers]
        past_mask, position = state[2 * self.layers], state[2 * self.layers + 1]
        cross_kv = state[2 * self.layers + 2 :]
        x = dec.embed_tokens(input_ids[:, 0]) + dec.embed_positions.weights[position + self.offset]
        bias = padding_bias(encoder_attention_mask, x.dtype)
        mask_out = torch.ones_like(position).unsqueeze(1)
        cache = past_mask.sum(dim=1)  # each row's entries are its first ones: their count
        presents: list[Tensor] = []
        for index, layer in enumerate(dec.layers):
            context, k, v = self.self_attend(layer.self_attn_layer_norm(x), index,
                                             past[2 * index], past[2 * index + 1], cache)
            presents += [k, v]
            x = x + layer.self_attn.out_proj(context)
            cross = layer.encoder_attn
            q = step_heads(cross.q_proj(layer.encoder_attn_layer_norm(x)), self.heads)
            context = attend_grouped(q, cross_kv[2 * index], cross_kv[2 * index + 1], bias)
            x = x + cross.out_proj(context)
            x = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
        logits = self.lm_head(dec.layer_norm(x))
        return (torch.log_softmax(logits, dim=-1), *presents, mask_out, position + 1)

