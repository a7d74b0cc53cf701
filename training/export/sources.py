"""What can be exported: this project's model directories and local MarianMT checkpoints."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn
from transformers import (
    AutoTokenizer,
    M2M100ForConditionalGeneration,
    MarianMTModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from training.checkpoint import load_model_dir
from training.errors import UserError
from training.export.generation import generation_defaults, read_generation_config
from training.export.languages import api_code, opus_target_tokens
from training.models.marian import EAGER, MarianSeq2Seq
from training.models.rnn import RNNSeq2Seq

SUPPORTED = ("this project's model directories (model_config.json + model.safetensors, e.g. "
             "runs/<run>/best or models/<name>) and MarianMT (OPUS-MT), M2M100 and NLLB-200 "
             "checkpoints (config.json with model_type 'marian' or 'm2m_100', weights, "
             "tokenizer files)")
NLLB_CODE = re.compile(r"^[a-z]{3}_[A-Z][a-z]{3}$")  # fra_Latn: language and script
MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    "marian": MarianMTModel, "m2m_100": M2M100ForConditionalGeneration}


@dataclass
class Source:
    """A loaded model ready for export, with the facts ``model.json`` records."""

    arch: str  # "transformer", "lstm" or "gru"
    module: nn.Module  # MarianMTModel or RNNSeq2Seq, in eval mode
    tokenizer: PreTrainedTokenizerBase
    special_tokens: dict[str, int]
    vocab_size: int
    max_positions: int
    metadata: dict[str, Any] = field(default_factory=dict)
    # A multi-target model's target-language tokens put before the source, by API code
    target_tokens: dict[str, int] = field(default_factory=dict)
    # A multilingual model's language tokens (M2M100: the source's leads it, the target's is
    # forced as the first generated token), by the tokenizer's own code
    language_ids: dict[str, int] = field(default_factory=dict)


def load_source(path: Path) -> Source:
    """Load SRC or raise a :class:`UserError` naming what is supported."""
    if not path.is_dir():
        raise UserError(f"{path} is not a directory; supported: {SUPPORTED}")
    if (path / "model_config.json").is_file():
        return _project_source(path)
    if (path / "config.json").is_file():
        return _marian_source(path)
    raise UserError(f"{path} holds neither model_config.json nor config.json; "
                    f"supported: {SUPPORTED}")


def _tokenizer(path: Path) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError, TypeError) as err:
        raise UserError(f"{path}: no usable tokenizer files ({type(err).__name__}); a MarianMT "
                        "directory needs source.spm/target.spm/vocab.json or tokenizer.json"
                        ) from None


def _project_source(path: Path) -> Source:
    model, cfg = load_model_dir(path)
    meta = json.loads((path / "model_config.json").read_text())
    meta.pop("model", None)
    module: nn.Module = model.model if isinstance(model, MarianSeq2Seq) else model
    special = {"pad": cfg.pad_id, "eos": cfg.eos_id, "decoder_start": cfg.decoder_start_id,
               "unk": 2}
    return Source(cfg.arch, module.eval(), _tokenizer(path), special, cfg.vocab_size,
                  cfg.max_positions, meta)


def _marian_source(path: Path) -> Source:
    config = json.loads((path / "config.json").read_text())
    model_type = config.get("model_type")
    if model_type not in MODEL_CLASSES:
        raise UserError(f"{path} is a {model_type!r} checkpoint, which is not supported; "
                        f"supported: {SUPPORTED}")
    try:
        model = MODEL_CLASSES[model_type].from_pretrained(str(path), **EAGER)
    except OSError as err:
        reason = str(err).split("\n")[0]
        name = "MarianMT" if model_type == "marian" else "M2M100"
        raise UserError(f"{path}: cannot load the {name} weights ({reason})") from None
    tokenizer = _tokenizer(path)
    cfg = model.config
    unk = tokenizer.unk_token_id
    special = {"pad": _token_id(cfg.pad_token_id, "pad_token_id"),
               "eos": _token_id(cfg.eos_token_id, "eos_token_id"),
               "decoder_start": _token_id(cfg.decoder_start_token_id, "decoder_start_token_id"),
               "unk": int(unk) if isinstance(unk, int) else -1}
    meta: dict[str, Any] = {"source": f"{model_type} checkpoint", "checkpoint": path.name,
                            **_languages(tokenizer)}
    generation = generation_defaults(read_generation_config(path), eos_id=special["eos"])
    if generation:
        meta["generation"] = generation
    vocab = getattr(cfg, "decoder_vocab_size", None) or cfg.vocab_size
    return Source("transformer", model.eval(), tokenizer, special, vocab,
                  cfg.max_position_embeddings, meta, opus_target_tokens(tokenizer.get_vocab()),
                  _language_ids(tokenizer))


def _language_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """A multilingual tokenizer's language tokens by its own code (M2M100's ``en``, whose
    token is ``__en__``; NLLB's ``fra_Latn``, a special token of that name)."""
    codes = getattr(tokenizer, "lang_code_to_id", None)
    if codes:
        return {str(code): int(index) for code, index in codes.items()}
    if not hasattr(tokenizer, "src_lang"):
        return {}
    named = [t for t in tokenizer.all_special_tokens if NLLB_CODE.match(str(t))]
    ids = tokenizer.convert_tokens_to_ids(named)
    assert isinstance(ids, list)
    return dict(zip(named, ids, strict=True))


def _languages(tokenizer: PreTrainedTokenizerBase) -> dict[str, str]:
    """``src_lang``/``tgt_lang`` from the tokenizer config's ``source_lang``/``target_lang``
    (as OPUS-MT checkpoints record them), in API codes."""
    found = {"src_lang": getattr(tokenizer, "source_lang", None) or getattr(
                 tokenizer, "src_lang", None),
             "tgt_lang": getattr(tokenizer, "target_lang", None) or getattr(
                 tokenizer, "tgt_lang", None)}
    return {key: api_code(code) for key, code in found.items() if isinstance(code, str) and code}


def _token_id(value: object, field_name: str) -> int:
    """A single special-token id from a Marian config, or a clear refusal."""
    if not isinstance(value, int):
        raise UserError(f"config.json: {field_name} must be one integer id, got {value!r}")
    return value


def is_rnn(source: Source) -> bool:
    """True for the project's LSTM/GRU models."""
    return isinstance(source.module, RNNSeq2Seq)
