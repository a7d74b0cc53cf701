"""Iteration-level (continuous) scheduling: requests join and leave the running decode loop
between two decoder steps.

Scheduling admits waiting requests in arrival order while the running ones stay under the
token budget (``beam * source tokens`` per request; the oldest waiting request is never
overtaken, so none starves); executing is one decoder step of every running search. With
``overlap_encoder`` (the service's default) the admitted requests are encoded in a second
thread during that step and join after it (``RunningLoop.step_and_admit``): on a CPU the step
leaves part of the cores idle, which the encoder uses. A request whose sentences are all done
is answered by that step, without waiting for the rest of its batch; one whose caller went
away leaves the loop at the next step. Requests for different language pairs of a multilingual
model share the running search, each row with its own source and forced target tokens.
Results are the ones each request gets alone (``inference.continuous``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from service.api.engine import Admission, Engine, RunningLoop
from service.api.scheduling import (
    BatchReport,
    Request,
    Result,
    Step,
    Waiting,
    approx_tokens,
)


class IterationLevel:
    """Drives an engine's :class:`RunningLoop` one decoder step at a time."""

    def __init__(self, engine: Engine, loop: RunningLoop, *, max_batch_tokens: int = 4096,
                 overlap_encoder: bool = True,
                 cost: Callable[[Sequence[str]], int] = approx_tokens) -> None:
        self.engine = engine
        self.loop = loop
        self.max_batch_tokens = max_batch_tokens
        self._cost = cost
        self._active: dict[int, tuple[Request, int]] = {}  # key: request and its cost
        self._admitted: list[Request] = []  # scheduled to join at the next step
        self._encoder = (ThreadPoolExecutor(1, thread_name_prefix="encoder")
                         if overlap_encoder else None)

    @property
    def overlap_encoder(self) -> bool:
        """Whether arrivals are encoded in a second thread during the decoder step."""
        return self._encoder is not None

    @property
    def busy(self) -> bool:
        """Whether admitted requests are still decoding."""
        return bool(self._active)

    def arrived(self, request: Request) -> None:
        """Nothing to note: admission looks at the budget only."""

    def cancel(self, request: Request) -> None:
        """Free the rows of a request that lost its caller."""
        if request in self._admitted:  # scheduled, not joined yet
            self._admitted.remove(request)
            del self._active[request.key]
        elif self._active.pop(request.key, None) is not None:
            self.loop.cancel(request.key)

    def close(self) -> None:
        """Stop the encoder thread."""
        if self._encoder is not None:
            self._encoder.shutdown(wait=False)

    def schedule(self, waiting: Waiting) -> None:
        """Admit waiting requests, oldest first, while the running ones fit the budget (the
        oldest is admitted whatever its cost when nothing else runs)."""
        used = sum(cost for _, cost in self._active.values())
        while waiting:
            head = waiting.oldest()
            cost = head.options.beam_size * self._cost(head.texts)
            if used + cost > self.max_batch_tokens and (self._active or self._admitted):
                break
            self._admitted.append(waiting.take())
            self._active[head.key] = (head, cost)
            used += cost

    def execute(self) -> Step:
        """One decoder step, the admitted requests joining (during it, with the encoder
        overlapping); what completed."""
        admit, self._admitted = self._admitted, []
        started, steps = time.perf_counter(), self.engine.decode_steps()
        admissions = [Admission(r.key, r.texts, r.options, r.pair) for r in admit]
        failure: Exception | None = None
        try:
            if self._encoder is not None:
                outcomes = self.loop.step_and_admit(admissions, self._encoder)
            else:
                outcomes = self.loop.admit(admissions) + self.loop.step()
        except Exception as err:  # the engine failed: every running request learns why
            failure = err
            outcomes = [(key, err) for key in self._active]
            self.loop = self._fresh_loop()
        done = [(self._active.pop(key)[0], result) for key, result in outcomes
                if key in self._active]
        return Step(done=done, report=self._report(admit, done, started, steps),
                    failure=failure)

    def _fresh_loop(self) -> RunningLoop:
        loop = self.engine.decode_loop()
        assert loop is not None, "the engine gave a running loop before"
        return loop

    def _report(self, admit: list[Request], done: list[tuple[Request, Result]],
                started: float, steps: int) -> BatchReport:
        results = [t for _, result in done if not isinstance(result, Exception) for t in result]
        return BatchReport(
            texts=self.loop.running, requests=len(admit),
            queue_waits=[started - request.enqueued for request in admit],
            seconds=time.perf_counter() - started,
            source_tokens=sum(t.source_tokens for t in results),
            target_tokens=sum(t.target_tokens for t in results),
            decode_steps=self.engine.decode_steps() - steps)

