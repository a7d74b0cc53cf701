"""Model hyper-parameters: one frozen dataclass for both architectures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Architecture = Literal["transformer", "lstm", "gru"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and sizes. Transformer fields map onto ``transformers.MarianConfig``."""

    arch: Architecture = "transformer"
    vocab_size: int = 8000
    d_model: int = 256  # transformer width; RNN embedding size
    layers: int = 3  # per side (encoder and decoder)
    heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    max_positions: int = 256
    hidden_size: int = 256  # RNN: per direction in the encoder, decoder hidden = 2x
    attention: Literal["luong", "bahdanau"] = "luong"
    activation: str = "swish"
    scale_embedding: bool = True
    tie_embeddings: bool = True
    pad_id: int = 0
    eos_id: int = 1
    decoder_start_id: int = 0
