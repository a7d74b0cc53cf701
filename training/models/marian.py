"""Transformer: ``transformers``' MarianMT built from a config, wrapped in the protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import MarianConfig, MarianMTModel
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from training.models.config import ModelConfig
from training.models.protocol import State


# Explicit attention ops: exports without sdpa's mask-building nodes (shared/notes).
EAGER: dict[str, Any] = {"attn_implementation": "eager"}


def marian_config(cfg: ModelConfig) -> MarianConfig:
    """The MarianConfig for our hyper-parameters (sinusoidal positions, shared embeddings)."""
    return MarianConfig(
        vocab_size=cfg.vocab_size, decoder_vocab_size=cfg.vocab_size, d_model=cfg.d_model,
        encoder_layers=cfg.layers, decoder_layers=cfg.layers,
        encoder_attention_heads=cfg.heads, decoder_attention_heads=cfg.heads,
        encoder_ffn_dim=cfg.ffn_dim, decoder_ffn_dim=cfg.ffn_dim,
        dropout=cfg.dropout, attention_dropout=cfg.dropout, activation_dropout=0.0,
        activation_function=cfg.activation, max_position_embeddings=cfg.max_positions,
        scale_embedding=cfg.scale_embedding, share_encoder_decoder_embeddings=True,
        tie_word_embeddings=cfg.tie_embeddings, pad_token_id=cfg.pad_id,
        eos_token_id=cfg.eos_id, decoder_start_token_id=cfg.decoder_start_id,
        forced_eos_token_id=cfg.eos_id, **EAGER,
    )


def config_of_checkpoint(directory: Path) -> ModelConfig:
    """The ModelConfig of a local MarianMT checkpoint, for fine-tuning it (``init_from``).

    Raises ValueError for configurations this project's config cannot describe."""
    config = MarianConfig.from_pretrained(str(directory))
    same = (config.encoder_layers == config.decoder_layers
            and config.encoder_attention_heads == config.decoder_attention_heads
            and config.encoder_ffn_dim == config.decoder_ffn_dim
            and config.share_encoder_decoder_embeddings
        and all(isinstance(i, int) for i in (config.pad_token_id, config.eos_token_id,
                                              config.decoder_start_token_id)))
    if not same:
        raise ValueError(f"{directory}: fine-tuning supports MarianMT checkpoints with equal "
                         "encoder/decoder layers, heads and FFN sizes, shared embeddings and "
                         "single special-token ids")
    return ModelConfig(
        arch="transformer", vocab_size=config.vocab_size, d_model=config.d_model,
        layers=config.encoder_layers, heads=config.encoder_attention_heads,
        ffn_dim=config.encoder_ffn_dim, dropout=config.dropout,
        max_positions=config.max_position_embeddings, activation=config.activation_function,
        scale_embedding=config.scale_embedding, tie_embeddings=config.tie_word_embeddings,
        pad_id=int(config.pad_token_id), eos_id=int(config.eos_token_id),  # type: ignore[arg-type]
        decoder_start_id=int(config.decoder_start_token_id))


class MarianSeq2Seq(nn.Module):
    """A MarianMTModel behind the ``encode/step/reorder`` protocol."""

    def __init__(self, model: MarianMTModel) -> None:
        super().__init__()
        self.model = model

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> MarianSeq2Seq:
        """A freshly initialised model."""
        torch_model = MarianMTModel(marian_config(cfg))
        return cls(torch_model)

    @classmethod
    def from_pretrained(cls, directory: Path) -> MarianSeq2Seq:
        """Fine-tuning start point: any local MarianMT checkpoint."""
        return cls(MarianMTModel.from_pretrained(str(directory), attn_implementation="eager"))

    def forward(self, src_ids: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced logits ``(batch, tgt_len, vocab)``."""
        out = self.model(input_ids=src_ids, attention_mask=src_mask, decoder_input_ids=tgt_in,
                         use_cache=False)
        return out.logits

    def encode(self, src_ids: Tensor, src_mask: Tensor) -> State:
        """State: encoder output ``(batch, src_len, d_model)``, mask, and an empty cache."""
        hidden = self.model.get_encoder()(input_ids=src_ids, attention_mask=src_mask)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        return {"encoder_out": hidden.last_hidden_state, "src_mask": src_mask, "cache": cache}

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """One decoder step with the growing key/value cache; log-probs ``(batch, vocab)``."""
        out = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=state["encoder_out"]),
            attention_mask=state["src_mask"], decoder_input_ids=tokens[:, None],
            cache=state["cache"], use_cache=True,
        )
        log_probs = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        return log_probs, {**state, "cache": out.cache}

    def reorder(self, state: State, index: Tensor) -> State:
        """Select batch rows of every state entry (the cache in place)."""
        state["cache"].reorder_cache(index)
        return {**state, "encoder_out": state["encoder_out"].index_select(0, index),
                "src_mask": state["src_mask"].index_select(0, index)}
