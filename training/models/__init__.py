"""Encoder-decoder models behind one protocol: ``encode``, ``step``, ``reorder``."""

from training.models.config import ModelConfig
from training.models.factory import build_model
from training.models.protocol import Seq2SeqModel, State

__all__ = ["ModelConfig", "Seq2SeqModel", "State", "build_model"]
