"""Tokenized training and dev data for one run."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerFast

from training.data import Example, read_examples
from training.errors import UserError
from training.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer

TOKENIZER_SAMPLE = 200_000  # texts (both sides) used to learn the vocabulary


@dataclass
class TokenizedSplit:
    """Token ids (eos appended) of one split; ``src_lens``/``tgt_lens`` as numpy arrays."""

    src: list[list[int]]
    tgt: list[list[int]]
    src_lens: np.ndarray
    tgt_lens: np.ndarray


def load_split(data: Path, split: str, limit: int = 0) -> list[Example]:
    """Examples of one split, with a clear error when the data was not prepared."""
    path = data / f"{split}.jsonl"
    if not path.is_file():
        raise UserError(f"{path} not found: run `python -m training.data prepare ... --out {data}`")
    examples = list(read_examples(path))
    if limit:
        examples = examples[:limit]
    if not examples:
        raise UserError(f"{path} is empty: prepare the data again with more versions")
    return examples


def get_tokenizer(directory: Path, train: list[Example], *, vocab_size: int, algorithm: str,
                  seed: int) -> PreTrainedTokenizerFast:
    """Load the tokenizer, training (and saving) it on the training texts if needed."""
    if (directory / "tokenizer.json").is_file():
        return load_tokenizer(directory)
    rng = random.Random(seed)
    sample = rng.sample(train, min(len(train), TOKENIZER_SAMPLE // 2))
    texts = [e.src for e in sample] + [e.tgt for e in sample]
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size, algorithm=algorithm)  # type: ignore[arg-type]
    save_tokenizer(tokenizer, directory)
    return load_tokenizer(directory)


def tokenize(tokenizer: PreTrainedTokenizerFast, examples: list[Example], max_len: int
             ) -> TokenizedSplit:
    """Encode both sides; pairs with a side longer than ``max_len`` tokens are dropped."""
    src = tokenizer([e.src for e in examples])["input_ids"]
    tgt = tokenizer([e.tgt for e in examples])["input_ids"]
    keep = [i for i in range(len(src)) if len(src[i]) <= max_len and len(tgt[i]) <= max_len]
    src = [src[i] for i in keep]
    tgt = [tgt[i] for i in keep]
    return TokenizedSplit(src, tgt, np.array([len(s) for s in src]),
                          np.array([len(t) for t in tgt]))


def dev_subset(examples: list[Example], pairs: str, size: int) -> list[Example]:
    """Dev examples of one version pair (``"k-l"``), first ``size`` of them."""
    if pairs:
        src_v, _, tgt_v = pairs.partition("-")
        examples = [e for e in examples if e.src_version == src_v and e.tgt_version == tgt_v]
    if not examples:
        raise UserError(f"no dev examples for version pair {pairs!r}: set dev_pairs to a pair "
                        "present in the data's manifest, or to \"\"")
    return examples[:size]
