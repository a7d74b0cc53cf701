"""Bundle tokenizers without importing transformers (and through it torch) when possible.

A ``tokenizer.json`` (what this project exports) is loaded with the ``tokenizers`` library
directly; SentencePiece bundles exported from OPUS-MT checkpoints fall back to
``transformers.AutoTokenizer``. Both offer the two calls the engine uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import Tokenizer


class FastTokenizer:
    """``tokenizer(texts)["input_ids"]`` and ``batch_decode(ids, skip_special_tokens=True)``
    over a ``tokenizers.Tokenizer``, as ``PreTrainedTokenizerFast`` does them."""

    def __init__(self, backend: Tokenizer) -> None:
        self.backend = backend
        self.backend.no_padding()
        self.backend.no_truncation()

    def __call__(self, texts: str | list[str]) -> dict[str, Any]:
        if isinstance(texts, str):
            return {"input_ids": self.backend.encode(texts).ids}
        return {"input_ids": [e.ids for e in self.backend.encode_batch(texts)]}

    def batch_decode(self, sequences: list[list[int]], skip_special_tokens: bool = True
                     ) -> list[str]:
        return list(self.backend.decode_batch(sequences, skip_special_tokens=skip_special_tokens))


def load_tokenizer(directory: Path) -> Any:
    """The bundle's tokenizer: ``tokenizers`` when it has tokenizer.json, else transformers."""
    path = directory / "tokenizer.json"
    if path.is_file():
        return FastTokenizer(Tokenizer.from_file(str(path)))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))
