"""Subword tokenizers trained with Hugging Face ``tokenizers``, saved for ``AutoTokenizer``.

Special ids are fixed so every component agrees: ``<pad>`` = 0 (also the decoder start, as in
MarianMT), ``</s>`` = 1, ``<unk>`` = 2, ``<s>`` = 3. Every encoded sequence ends with ``</s>``.
The default byte-level BPE round-trips any NFC text exactly (accents, apostrophes, the space
before French ``!``); Unigram with Metaspace is the alternative.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal, cast

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import AutoTokenizer, PreTrainedTokenizerFast

PAD, EOS, UNK, BOS = "<pad>", "</s>", "<unk>", "<s>"
SPECIAL_TOKENS = [PAD, EOS, UNK, BOS]
PAD_ID, EOS_ID, UNK_ID, BOS_ID = range(4)
Algorithm = Literal["bpe", "unigram"]


def _empty_tokenizer(algorithm: Algorithm, vocab_size: int) -> tuple[Tokenizer, trainers.Trainer]:
    """An untrained tokenizer and its trainer."""
    if algorithm == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        return tokenizer, trainers.BpeTrainer(
            special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            vocab_size=vocab_size, show_progress=False,
        )
    if algorithm == "unigram":
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
        tokenizer.decoder = decoders.Metaspace(prepend_scheme="first")
        return tokenizer, trainers.UnigramTrainer(
            special_tokens=SPECIAL_TOKENS, unk_token=UNK, vocab_size=vocab_size, show_progress=False
        )
    raise ValueError(f"unknown tokenizer algorithm {algorithm!r}: use 'bpe' or 'unigram'")


def train_tokenizer(
    texts: Iterable[str], *, vocab_size: int = 8000, algorithm: Algorithm = "bpe"
) -> PreTrainedTokenizerFast:
    """Train a ``vocab_size`` subword vocabulary on ``texts``; returns a transformers tokenizer."""
    tokenizer, trainer = _empty_tokenizer(algorithm, vocab_size)
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.train_from_iterator(texts, trainer=trainer)
    for token, expected in zip(SPECIAL_TOKENS, range(4), strict=True):
        assert tokenizer.token_to_id(token) == expected, f"{token} must have id {expected}"
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", special_tokens=[(EOS, EOS_ID)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=PAD, eos_token=EOS, unk_token=UNK, bos_token=BOS,
        clean_up_tokenization_spaces=False, model_max_length=512,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: Path) -> None:
    """Save so that ``AutoTokenizer.from_pretrained(directory)`` loads it."""
    tokenizer.save_pretrained(str(directory))


def load_tokenizer(directory: Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by :func:`save_tokenizer` (or any fast HF tokenizer)."""
    return cast(PreTrainedTokenizerFast, AutoTokenizer.from_pretrained(str(directory)))
