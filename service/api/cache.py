"""A least-recently-used cache of translations, bounded in entries and in bytes.

Keyed by model name, language pair, decoding options and the (stripped) text, so a repeated
sentence is answered without decoding. Results are shared between requests and must not be changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cachetools import LRUCache

from inference.languages import Pair
from inference.options import DecodeOptions
from inference.translator import Translation

Key = tuple[str, Pair, DecodeOptions, str]
ENTRY_OVERHEAD = 400  # bytes of Python objects around an entry's strings (measured, rounded)


def entry_bytes(text: str, result: Translation) -> int:
    """What an entry costs: its strings as UTF-8 plus the objects around them."""
    strings = [text, result.text, *(alternative.text for alternative in result.alternatives)]
    return ENTRY_OVERHEAD + sum(len(s.encode("utf-8", "surrogatepass")) for s in strings)


class TranslationCache:
    """LRU over ``(model, pair, options, text)``; ``on_lookup(model, hit)`` observes every
    look-up."""

    def __init__(self, *, max_entries: int, max_bytes: int,
                 on_lookup: Callable[[str, bool], None] | None = None) -> None:
        self.max_entries = max_entries
        self._lru: LRUCache[Key, tuple[Translation, int]] = LRUCache(
            maxsize=max_bytes, getsizeof=self._size)
        self._on_lookup = on_lookup

    @staticmethod
    def _size(value: Any) -> int:
        return int(value[1])

    @property
    def entries(self) -> int:
        """Translations held."""
        return len(self._lru)

    @property
    def bytes(self) -> int:
        """Bytes held (as counted by :func:`entry_bytes`)."""
        return int(self._lru.currsize)

    def get(self, model: str, options: DecodeOptions, text: str, *, pair: Pair
            ) -> Translation | None:
        """The cached translation, or None (and the look-up is counted)."""
        found = self._lru.get((model, pair, options, text))
        if self._on_lookup is not None:
            self._on_lookup(model, found is not None)
        return found[0] if found is not None else None

    def put(self, model: str, options: DecodeOptions, text: str, result: Translation, *,
            pair: Pair) -> None:
        """Keep a translation, evicting the least recently used beyond either bound (one
        larger than the whole byte bound is not kept)."""
        size = entry_bytes(text, result)
        if size > self._lru.maxsize:
            return
        self._lru[(model, pair, options, text)] = (result, size)
        while len(self._lru) > self.max_entries:
            self._lru.popitem()
