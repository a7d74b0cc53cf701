"""Splitting long texts into sentences so that no input exceeds the model's positions."""

from __future__ import annotations

import re

SENTENCE_END = re.compile(r"(?<=[.!?;:…»\"'])\s+(?=\S)")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (punctuation followed by whitespace); never empty pieces."""
    pieces = [piece.strip() for piece in SENTENCE_END.split(text.strip())]
    return [piece for piece in pieces if piece] or [text]


def join_sentences(sentences: list[str]) -> str:
    """Re-join translated sentences with single spaces."""
    return " ".join(sentence for sentence in sentences if sentence)
