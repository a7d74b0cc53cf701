"""A loader over the real engine that records which language pairs shared each engine call
(request-level batching) or decoder step (iteration-level), to show that requests with
different languages are batched together."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from inference.translator import Translation
from service.api.engine import Admission, DecodeOptions, Outcome, Pair, RunningLoop
from service.api.registry import LoadedModel, load_translator
from service.api.settings import Settings


@dataclass
class PairsPerBatch:
    """The loader: ``batches`` gets, per engine call or decoder step, the pairs of the
    requests in it (None: the exported pair, as the warm-up sends); every decoder step sleeps
    ``step_s`` first, so that requests sent together overlap in the running loop."""

    step_s: float = 0.0
    batches: list[set[Pair | None]] = field(default_factory=list)

    def __call__(self, path: Path, settings: Settings) -> LoadedModel:
        return RecordingEngine(load_translator(path, settings), self)

    def widest(self) -> set[Pair]:
        """The pairs of the batch that held the most different pairs."""
        return max(({pair for pair in batch if pair} for batch in self.batches), key=len)


class RecordingEngine:
    """The real engine, its calls and running loops recorded."""

    def __init__(self, inner: LoadedModel, record: PairsPerBatch) -> None:
        self.inner, self.record = inner, record
        self.manifest, self.provider = inner.manifest, inner.provider

    def translate(self, texts: list[str], options: DecodeOptions,
                  pairs: Sequence[Pair | None] | None = None) -> list[Translation]:
        self.record.batches.append(set(pairs or [None]))
        return self.inner.translate(texts, options, pairs)

    def decode_steps(self) -> int:
        return self.inner.decode_steps()

    def decode_loop(self) -> RunningLoop | None:
        loop = self.inner.decode_loop()
        return None if loop is None else RecordingLoop(loop, self.record)


class RecordingLoop:
    """A running loop whose steps record the pairs of the requests they decoded."""

    def __init__(self, inner: RunningLoop, record: PairsPerBatch) -> None:
        self.inner, self.record = inner, record
        self.pairs: dict[int, Pair | None] = {}  # requests in the loop, by key

    @property
    def running(self) -> int:
        return self.inner.running

    def admit(self, admissions: list[Admission]) -> list[Outcome]:
        self.pairs.update((a.key, a.pair) for a in admissions)
        return self._finished(self.inner.admit(admissions))

    def step(self) -> list[Outcome]:
        return self._stepped(set(self.pairs), self.inner.step)

    def step_and_admit(self, admissions: list[Admission], encoder: Executor) -> list[Outcome]:
        stepped = set(self.pairs)
        if not self.inner.running:  # with nothing running the arrivals take this step
            stepped |= {a.key for a in admissions}
        self.pairs.update((a.key, a.pair) for a in admissions)
        return self._stepped(stepped, lambda: self.inner.step_and_admit(admissions, encoder))

    def cancel(self, key: int) -> None:
        self.pairs.pop(key, None)
        self.inner.cancel(key)

    def _stepped(self, keys: set[int], run: Callable[[], list[Outcome]]) -> list[Outcome]:
        time.sleep(self.record.step_s)
        outcomes = run()
        self.record.batches.append({self.pairs[key] for key in keys})
        return self._finished(outcomes)

    def _finished(self, outcomes: list[Outcome]) -> list[Outcome]:
        for key, _ in outcomes:
            self.pairs.pop(key, None)
        return outcomes
