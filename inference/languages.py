"""The language pairs a bundle serves, and the tokens that pick a pair in a multilingual one.

A bundle exported for one pair serves that pair (``source_lang``/``target_lang`` of
model.json). A multilingual bundle (M2M100, NLLB-200: ``metadata.language_tokens``, the token
id of every language by the code the API serves it under) serves every pair of two different
languages among them: its tokenizer puts the exported source language's token at one place of
every tokenized source (``metadata.source_language_index``: 0 first, -1 last), which the
engine replaces by the requested source's token; the requested target's token is forced as the
first generated one (``generate``'s ``forced_bos_token_id``) and left out of the output.
"""

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

    @classmethod
    def of(cls, manifest: Any) -> Languages:
        """The languages a :class:`~inference.bundle.Manifest` records."""
        meta = manifest.metadata
        tokens = meta.get("language_tokens")
        return cls(manifest.source_lang, manifest.target_lang,
                   {str(k): int(v) for k, v in tokens.items()} if isinstance(tokens, dict)
                   else {},
                   int(meta.get("source_language_index", 0)),
                   tuple(int(t) for t in meta.get("target_prefix") or ()))

    @property
    def multilingual(self) -> bool:
        """Whether the bundle serves more than the pair it was exported for."""
        return bool(self.tokens)

    @property
    def sources(self) -> list[str]:
        """Languages it translates from, sorted."""
        return sorted(self.tokens) if self.multilingual else [self.source]

    @property
    def targets(self) -> list[str]:
        """Languages it translates into, sorted."""
        return sorted(self.tokens) if self.multilingual else [self.target]

    def targets_of(self, source: str) -> list[str]:
        """Languages it translates ``source`` into, sorted (none for an unknown source)."""
        if not self.multilingual:
            return [self.target] if source == self.source else []
        return [code for code in self.targets if code != source] if source in self.tokens else []

    def pairs(self) -> Iterator[Pair]:
        """Every ``(source, target)`` it serves."""
        for source in self.sources:
            for target in self.targets_of(source):
                yield source, target

    def serves(self, source: str, target: str) -> bool:
        """Whether ``source`` -> ``target`` is one of its pairs."""
        if not self.multilingual:
            return (source, target) == (self.source, self.target)
        return source != target and source in self.tokens and target in self.tokens

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
        return [self.tokens[target]] if self.multilingual else list(self.exported_prefix)

    def source_ids(self, ids: list[int], source: str) -> list[int]:
        """Tokenized source ``ids`` with the exported source's language token replaced by
        ``source``'s (unchanged for a one-pair bundle or the exported source)."""
        if not self.multilingual or source == self.source or not ids:
            return ids
        index = self.source_index if self.source_index >= 0 else len(ids) + self.source_index
        swapped = list(ids)
        if swapped[index] == self.tokens[self.source]:
            swapped[index] = self.tokens[source]
        return swapped
