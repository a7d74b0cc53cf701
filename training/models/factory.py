"""Build a model of either architecture from its config."""

from __future__ import annotations

from pathlib import Path

from training.models.config import ModelConfig
from training.models.marian import MarianSeq2Seq
from training.models.rnn import RNNSeq2Seq


Seq2SeqModule = MarianSeq2Seq | RNNSeq2Seq


def build_model(cfg: ModelConfig, init_from: Path | None = None) -> Seq2SeqModule:
    """A model for ``cfg``; ``init_from`` fine-tunes from a local MarianMT checkpoint."""
    if cfg.arch == "transformer":
        if init_from is not None:
            return MarianSeq2Seq.from_pretrained(init_from)
        return MarianSeq2Seq.from_config(cfg)
    if init_from is not None:
        raise ValueError("--init-from is only supported for the transformer architecture")
    return RNNSeq2Seq(cfg)
