"""Language identification with lingua, restricted to the languages the server translates from.

lingua was the most accurate of the libraries compared on the corpus' test verses (see
``docs/language-detection.md``, ``python -m bench.language_detection``) and gives a real
confidence: the probability of each candidate language among the allowed ones.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

from lingua import Language, LanguageDetector, LanguageDetectorBuilder

from service.api.errors import ApiError

LINGUA_CODES = {language.iso_code_639_1.name.lower(): language for language in Language.all()}


@dataclass(frozen=True)
class Detection:
    """One candidate language of a text; ``confidence`` in [0, 1], the candidates of one text
    summing to 1."""

    language: str
    confidence: float


class LanguageIdentifier:
    """Identifies the language of texts among ``languages`` (ISO 639-1 codes; those lingua does
    not know are left out and listed in ``unknown``)."""

    def __init__(self, languages: Iterable[str]) -> None:
        wanted = sorted(set(languages))
        self.languages = [code for code in wanted if code in LINGUA_CODES]
        self.unknown = [code for code in wanted if code not in LINGUA_CODES]
        self._lock = threading.Lock()  # the detector is built once, by the first caller

    @cached_property
    def _detector(self) -> LanguageDetector | None:
        if len(self.languages) < 2:
            return None  # one candidate: nothing to tell apart
        return LanguageDetectorBuilder.from_languages(
            *(LINGUA_CODES[code] for code in self.languages)).build()

    def detect(self, text: str) -> list[Detection]:
        """The candidate languages of ``text``, most likely first (confidence 0 left out).

        A 400 ``ApiError`` when the server translates from no language lingua knows."""
        if not self.languages:
            raise ApiError(400, "detection_unavailable", "language detection is not available "
                           f"for the served source languages {self.unknown}; give the source "
                           "language", field="source")
        with self._lock:
            detector = self._detector
        if detector is None:
            return [Detection(self.languages[0], 1.0)]
        values = detector.compute_language_confidence_values(text)
        found = [Detection(value.language.iso_code_639_1.name.lower(), value.value)
                 for value in values if value.value > 0]
        return found or [Detection(code, 1 / len(self.languages)) for code in self.languages]

    def best(self, text: str) -> Detection:
        """The most likely language of ``text``."""
        return self.detect(text)[0]


class Identifiers:
    """One :class:`LanguageIdentifier` per set of candidate languages, built on first use
    (the sets are few: all served sources, and the sources of each target)."""

    def __init__(self) -> None:
        self._built: dict[frozenset[str], LanguageIdentifier] = {}

    def warm(self, languages: Mapping[str, Iterable[str]]) -> None:
        """Build the identifiers of the served languages (source -> its targets: all the
        sources, and the sources of each target) and load their language models now (a second
        or two), not in the first request that detects."""
        into: dict[str, set[str]] = {}
        for source, targets in languages.items():
            for target in targets:
                into.setdefault(target, set()).add(source)
        groups = {frozenset(source for source, targets in languages.items() if targets)}
        groups |= {frozenset(sources) for sources in into.values()}
        for group in groups:
            identifier = self.identifier(group)
            if identifier.languages:
                identifier.detect("warm up")

    def identifier(self, languages: Iterable[str]) -> LanguageIdentifier:
        """The identifier choosing among ``languages``."""
        key = frozenset(languages)
        if key not in self._built:
            self._built[key] = LanguageIdentifier(key)
        return self._built[key]
