"""Text as people write it: sentences to translate, every separator between them kept.

Segmenter: sentencex (maintained, 300 languages); pysbd is 200x slower, blingfire misses fr "?".

:func:`segment` cuts a text into spans whose concatenation is the text, byte for byte. Line
breaks are hard boundaries: each line's sentences come from the segmenter, and the whitespace
around lines and between sentences (newlines, blank lines, runs of spaces, leading and trailing
whitespace) are separator spans that are never translated. A sentence span starts and ends
with a non-space character and holds at least one letter; a span of digits or punctuation
alone (``2.``, ``---``) is kept as it is, not given to the model, which would make up words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sentencex import get_sentence_boundaries

# A line break (kept, in the split's odd places); lines are translated apart.
LINE_BREAK = re.compile(r"(\r\n|[\n\r\x85\u2028\u2029])")
# A one-letter initial and the spaces after it ("M. Dupont", "J. Smith"): never a sentence of
# its own.
INITIAL = re.compile(r"[^\W\d_]\.\s*")
# Every sentence boundary needs a mark that is neither a letter, a digit nor a space: a line
# without one is one sentence, and the segmenter's cost is saved.
PUNCTUATION = re.compile(r"[^\w\s]")


@dataclass(frozen=True)
class Segmented:
    """A text cut into ``spans`` (their concatenation is the text); ``sentences`` are the
    indices of the spans to translate, in order."""

    spans: tuple[str, ...]
    sentences: tuple[int, ...]

    @property
    def text(self) -> str:
        """The text that was cut."""
        return "".join(self.spans)

    @property
    def sources(self) -> list[str]:
        """The sentences to translate, in order."""
        return [self.spans[index] for index in self.sentences]

    def join(self, translations: Sequence[str]) -> str:
        """The text with sentence ``i`` replaced by ``translations[i]``; every other span
        unchanged."""
        if len(translations) != len(self.sentences):
            raise ValueError(f"{len(translations)} translations for {len(self.sentences)} "
                             "sentences")
        spans = list(self.spans)
        for index, translation in zip(self.sentences, translations, strict=True):
            spans[index] = translation
        return "".join(spans)

    def edges(self, number: int) -> tuple[str, str]:
        """The separators a stream sends around sentence ``number`` (from 0): before it, the
        text's leading spans when it is the first; after it, the spans up to the next sentence
        (to the end of the text for the last). Over all sentences, ``before + translation +
        after`` concatenates to :meth:`join`."""
        index = self.sentences[number]
        start = 0 if number == 0 else index
        last = number + 1 == len(self.sentences)
        end = len(self.spans) if last else self.sentences[number + 1]
        return "".join(self.spans[start:index]), "".join(self.spans[index + 1 : end])


def segment(text: str, *, language: str) -> Segmented:
    """Cut ``text`` (``language``: an ISO 639 code such as ``en``, ``fr``, ``zh``; the
    segmenter falls back to generic rules for one it does not know). A line is cut the same
    way alone or within a text."""
    spans: list[str] = []
    sentences: list[int] = []
    for number, line in enumerate(LINE_BREAK.split(text)):
        if number % 2:  # a line break
            spans.append(line)
            continue
        for piece in line_sentences(line, language):
            core = piece.strip()
            if not core:
                _add_separator(spans, piece)
                continue
            start = piece.index(core)
            _add_separator(spans, piece[:start])
            if any(char.isalpha() for char in core):
                sentences.append(len(spans))
            spans.append(core)
            _add_separator(spans, piece[start + len(core) :])
    return Segmented(tuple(spans), tuple(sentences))


def line_sentences(line: str, language: str) -> list[str]:
    """The segmenter's sentences of one line, each with the whitespace that follows it (they
    concatenate to ``line``); a one-letter initial is joined to what follows it."""
    if not PUNCTUATION.search(line):
        return [line]
    pieces: list[str] = []
    for bound in get_sentence_boundaries(language, line):
        piece = line[bound["start_index"] : bound["end_index"]]
        if pieces and INITIAL.fullmatch(pieces[-1]):
            pieces[-1] += piece
        else:
            pieces.append(piece)
    if "".join(pieces) != line:  # never seen; the line whole is still a correct cut
        return [line]
    return pieces


def _add_separator(spans: list[str], separator: str) -> None:
    """Append ``separator`` unless it is empty."""
    if separator:
        spans.append(separator)
