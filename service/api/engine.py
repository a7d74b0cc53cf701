"""What the batcher's scheduling strategies drive: an :class:`Engine` (a blocking batched
``translate``) and, for iteration-level scheduling, a :class:`RunningLoop` that requests join
and leave between decoder steps. :class:`TranslatorEngine` and :class:`TranslatorLoop` put the
ONNX Runtime :class:`Translator` and :class:`DecodeLoop` behind them."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

from inference.continuous import Arrival, DecodeLoop
from inference.languages import Pair
from inference.options import DecodeOptions
from inference.translator import Translation, Translator

__all__ = ["Admission", "DecodeOptions", "Engine", "Outcome", "Pair", "RunningLoop",
           "TranslatorEngine", "TranslatorLoop"]


@dataclass(frozen=True)
class Admission:
    """A request joining a running loop: its key, texts, options and languages."""

    key: int
    texts: list[str]
    options: DecodeOptions
    pair: Pair | None = None  # (source, target) of all its texts; None: the exported pair


Outcome = tuple[int, list[Translation] | Exception]  # request key and its result or error


class RunningLoop(Protocol):
    """Requests in, finished requests out, one decoder step at a time (one thread drives it)."""

    @property
    def running(self) -> int:
        """Sentences still decoding."""
        ...

    def admit(self, admissions: list[Admission]) -> list[Outcome]:
        """Join the admissions to the running batch; those answered without decoding."""
        ...

    def step(self) -> list[Outcome]:
        """One decoder step; the requests that completed in it."""
        ...

    def step_and_admit(self, admissions: list[Admission], encoder: Executor) -> list[Outcome]:
        """One decoder step while ``encoder`` prepares the admissions, which join after it."""
        ...

    def cancel(self, key: int) -> None:
        """Forget a request and free its rows."""
        ...


class Engine(Protocol):
    """A model as the batcher sees it (its calls run in the batcher's worker thread)."""

    def translate(self, texts: list[str], options: DecodeOptions,
                  pairs: Sequence[Pair | None] | None = None) -> list[Translation]:
        """One translation per text, in order (blocking); ``pairs``: per text, its
        ``(source, target)`` languages (None: the exported pair)."""
        ...

    def decode_steps(self) -> int:
        """Decoder calls made so far (a running total)."""
        ...

    def decode_loop(self) -> RunningLoop | None:
        """A new, empty running loop; None when the model cannot join running batches."""
        ...


class TranslatorEngine:
    """:class:`Translator` behind the :class:`Engine` protocol."""

    def __init__(self, translator: Translator) -> None:
        self.translator = translator
        self.manifest = translator.manifest
        self.provider = translator.provider

    def translate(self, texts: list[str], options: DecodeOptions,
                  pairs: Sequence[Pair | None] | None = None) -> list[Translation]:
        """Blocking batched translation (scores always on; the service hides them); texts
        of different pairs share the batch."""
        return self.translator.translate(texts, options, pairs=pairs)

    def decode_steps(self) -> int:
        """Decoder calls so far."""
        return int(self.translator.model.steps)

    def decode_loop(self) -> TranslatorLoop | None:
        """A :class:`DecodeLoop` over the translator; None for bundles without a cache mask."""
        if not self.translator.model.joinable:
            return None
        return TranslatorLoop(DecodeLoop(self.translator))


class TranslatorLoop:
    """:class:`DecodeLoop` behind the :class:`RunningLoop` protocol."""

    def __init__(self, decode_loop: DecodeLoop) -> None:
        self.decode_loop = decode_loop

    @property
    def running(self) -> int:
        """Sentences still decoding."""
        return self.decode_loop.running

    def admit(self, admissions: list[Admission]) -> list[Outcome]:
        """Encode the admissions and join them before the next step."""
        return self.decode_loop.admit(_arrivals(admissions))

    def step(self) -> list[Outcome]:
        """One decoder step of every running search."""
        return self.decode_loop.step()

    def step_and_admit(self, admissions: list[Admission], encoder: Executor) -> list[Outcome]:
        """One decoder step while ``encoder`` encodes the admissions; they join after it."""
        return self.decode_loop.step_and_admit(_arrivals(admissions), encoder)

    def cancel(self, key: int) -> None:
        """Forget a request and free its rows."""
        self.decode_loop.cancel(key)


def _arrivals(admissions: list[Admission]) -> list[Arrival]:
    """The admissions as the decode loop's arrivals (options were checked when made)."""
    return [Arrival(a.key, a.texts, a.options, pair=a.pair) for a in admissions]
