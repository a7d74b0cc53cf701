"""The language pairs a bundle serves, and the tokens that pick a pair in a multilingual one.

A bundle exported for one pair serves that pair (``source_lang``/``target_lang`` of
model.json). A multilingual bundle (M2M100, NLLB-200: ``metadata.language_tokens``, the token
id of every language by the code the API serves it under) serves every pair of two different
languages among them: its tokenizer puts the exported source language's token at one place of
every tokenized source (``metadata.source_language_index``: 0 first, -1 last), which the
engine replaces by the requested source's token; the requested target's token is forced as the
first generated one (``generate``'s ``forced_bos_token_id``) and left out of the output.
A multi-target OPUS-MT bundle (``metadata.target_tokens_in_source``: the ``>>fra<<`` token of
every target by API code) serves its source into each of those targets: the target's token
leads the source (``metadata.source_prefix`` holds the exported target's, for bundles that
record no others)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Pair = tuple[str, str]  # (source, target) language codes as the API serves them
Side = Literal["source", "target"]


class LanguageError(ValueError):
    """A language the bundle does not serve on ``side``; ``known`` lists those it does."""

    def __init__(self, code: str, side: Side, known: Sequence[str]) -> None:
        super().__init__(f"{side} language {code!r} is not served; {side} languages: "
                         f"{', '.join(known) or 'none'}")
        self.code, self.side, self.known = code, side, list(known)


@dataclass(frozen=True)
class Languages:
    """The pairs one bundle serves (see the module docstring)."""

    source: str  # the pair it was exported for
    target: str
    tokens: Mapping[str, int] = field(default_factory=dict)  # multilingual: code -> token id
    source_index: int = 0  # where the tokenizer puts the source language's token
    exported_prefix: tuple[int, ...] = ()  # metadata.target_prefix of the exported pair
    in_source: Mapping[str, int] = field(default_factory=dict)  # multi-target: code -> >>xx<<
    exported_source_prefix: tuple[int, ...] = ()  # metadata.source_prefix

    @classmethod
    def of(cls, manifest: Any) -> Languages:
        """The languages a :class:`~inference.bundle.Manifest` records."""
        meta = manifest.metadata
        return cls(manifest.source_lang, manifest.target_lang,
                   _code_ids(meta.get("language_tokens")),
                   int(meta.get("source_language_index", 0)),
                   tuple(int(t) for t in meta.get("target_prefix") or ()),
                   _code_ids(meta.get("target_tokens_in_source")),
                   tuple(int(t) for t in meta.get("source_prefix") or ()))

    @property
    def multilingual(self) -> bool:
        """Whether the bundle serves more than the pair it was exported for."""
        return bool(self.tokens) or len(self.targets) > 1

    @property
    def sources(self) -> list[str]:
        """Languages it translates from, sorted."""
        return sorted(self.tokens) if self.tokens else [self.source]

    @property
    def targets(self) -> list[str]:
        """Languages it translates into, sorted."""
        if self.tokens:
            return sorted(self.tokens)
        others = sorted(code for code in self.in_source if code != self.source)
        return others or [self.target]

    def targets_of(self, source: str) -> list[str]:
        """Languages it translates ``source`` into, sorted (none for an unknown source)."""
        if not self.tokens:
            return self.targets if source == self.source else []
        return [code for code in self.targets if code != source] if source in self.tokens else []

    def pairs(self) -> Iterator[Pair]:
        """Every ``(source, target)`` it serves."""
        for source in self.sources:
            for target in self.targets_of(source):
                yield source, target

    def serves(self, source: str, target: str) -> bool:
        """Whether ``source`` -> ``target`` is one of its pairs."""
        return target in self.targets_of(source)

    def check(self, pair: Pair | None) -> Pair:
        """``pair``, or the exported pair for None; :class:`LanguageError` naming the side
        and the languages there when it is not served."""
        if pair is None:
            return self.source, self.target
        source, target = pair
        if source not in self.sources:
            raise LanguageError(source, "source", self.sources)
        if not self.serves(source, target):
            raise LanguageError(target, "target", self.targets_of(source))
        return pair

    def target_prefix(self, target: str) -> list[int]:
        """Tokens forced first when translating into ``target``: its language token, or for a
        one-pair bundle its recorded ``target_prefix`` (often none)."""
        return [self.tokens[target]] if self.tokens else list(self.exported_prefix)

    def source_prefix(self, target: str) -> list[int]:
        """Tokens put before every source translated into ``target``: a multi-target
        model's ``>>xxx<<`` token, or the recorded ``source_prefix`` (often none)."""
        if target in self.in_source:
            return [self.in_source[target]]
        return list(self.exported_source_prefix)

    def source_ids(self, ids: list[int], source: str) -> list[int]:
        """Tokenized source ``ids`` with the exported source's language token replaced by
        ``source``'s (unchanged for a one-pair bundle or the exported source)."""
        if not self.tokens or source == self.source or not ids:
            return ids
        index = self.source_index if self.source_index >= 0 else len(ids) + self.source_index
        swapped = list(ids)
        if swapped[index] == self.tokens[self.source]:
            swapped[index] = self.tokens[source]
        return swapped


def _code_ids(found: Any) -> dict[str, int]:
    """A metadata map of language code -> token id; empty when absent."""
    return {str(k): int(v) for k, v in found.items()} if isinstance(found, dict) else {}
