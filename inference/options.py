"""How to decode: one frozen, keyword-only options type from the HTTP request to the search."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, kw_only=True)
class DecodeOptions:
    """Decoding options; inputs share a search (and requests an engine call) only when these
    are equal. The exact meaning of each is in ``inference.search``'s docstring.

    ``max_length`` caps generated tokens absolutely (eos included); None: ``2 * source + 10``,
    up to the model's positions. A bad value raises ``ValueError`` naming the field."""

    beam_size: int = 4
    num_hypotheses: int = 1
    length_penalty: float = 1.0
    length_penalty_form: Literal["average", "gnmt"] = "average"
    min_length: int = 0
    max_length: int | None = None
    no_repeat_ngram_size: int = 0
    early_stopping: bool = False
    banned_ids: tuple[int, ...] = ()
    forced_eos: bool = False

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {self.beam_size}")
        if not 1 <= self.num_hypotheses <= self.beam_size:
            raise ValueError(f"num_hypotheses must be between 1 and beam_size "
                             f"({self.beam_size}), got {self.num_hypotheses}")
        if self.min_length < 0 or self.no_repeat_ngram_size < 0:
            raise ValueError("min_length and no_repeat_ngram_size must not be negative")
        if any(token < 0 for token in self.banned_ids):
            raise ValueError(f"banned_ids must be token ids (not negative), got {self.banned_ids}")
