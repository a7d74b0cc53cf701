"""Request-level scheduling: whole requests share one engine call and leave it together.

Scheduling with no gathered group left gathers a batch: the oldest waiting request plus the
next ones while they fit the source-token budget; while the queue holds less than the budget
it waits up to ``max_wait_s`` (from when the engine became free) for more. What it gathered is
split by decoding options (requests with different beams cannot share a search), not by
languages (a multilingual model's rows each get their own source and target language tokens);
each step runs the engine call of one group and hands every request exactly its own slice of
the results.

Waiting for company only pays when company is likely: with ``wait_policy="adaptive"`` (the
default) the strategy waits only when the median of the recent gaps between arrivals is within
``max_wait_s`` (:class:`ArrivalGaps`), so a lone request into an idle engine starts at once
while the bursts of many clients are still gathered; ``"always"`` waits every time.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Literal

from inference.options import DecodeOptions
from service.api.engine import Engine
from service.api.scheduling import (
    BatchReport,
    Request,
    Result,
    Step,
    Waiting,
    approx_tokens,
)

WaitPolicy = Literal["adaptive", "always"]


class ArrivalGaps:
    """The gaps between the last ``window`` arrivals, to judge whether waiting pays.

    With Poisson arrivals the median gap is ``ln 2 / rate``, so "median gap <= wait" means
    even odds or better that another request arrives within the wait.
    """

    def __init__(self, window: int = 16) -> None:
        self._gaps: deque[float] = deque(maxlen=window)
        self._last: float | None = None

    def record(self, now: float) -> None:
        """Note one arrival at ``now`` (seconds, monotonic)."""
        if self._last is not None:
            self._gaps.append(now - self._last)
        self._last = now

    def expects_within(self, seconds: float) -> bool:
        """Whether another arrival is likely within ``seconds``; True until half the window is
        known (no evidence yet: wait as configured)."""
        maxlen = self._gaps.maxlen or 1
        if len(self._gaps) < max(1, maxlen // 2):
            return True
        return statistics.median(self._gaps) <= seconds


class RequestLevel:
    """Gathers whole requests into engine calls (one :class:`Engine.translate` per step)."""

    def __init__(self, engine: Engine, *, max_batch_tokens: int = 4096,
                 max_wait_s: float = 0.005, wait_policy: WaitPolicy = "adaptive",
                 cost: Callable[[Sequence[str]], int] = approx_tokens) -> None:
        self.engine = engine
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_s
        self.wait_policy = wait_policy
        self.arrivals = ArrivalGaps()
        self._cost = cost
        self._groups: deque[list[Request]] = deque()  # gathered, one engine call each
        self._gathering_until: float | None = None  # while waiting for company

    @property
    def busy(self) -> bool:
        """Whether gathered requests still wait for their engine call."""
        return bool(self._groups)

    def arrived(self, request: Request) -> None:
        """Record the arrival (once per client call) for the adaptive wait."""
        if request.arrival:
            self.arrivals.record(request.enqueued)

    def cancel(self, request: Request) -> None:
        """Drop a gathered request before its engine call (a running call cannot stop)."""
        for group in self._groups:
            if request in group:
                group.remove(request)

    def close(self) -> None:
        """Nothing of its own to release."""

    def schedule(self, waiting: Waiting) -> float | None:
        """With no gathered group left, gather a batch; or the time to look for company."""
        while self._groups and not self._groups[0]:
            self._groups.popleft()  # every request of the group was dropped
        if self._groups or not waiting:
            self._gathering_until = None
            return None
        now = time.perf_counter()
        if self._gathering_until is None:
            self._gathering_until = now + self._wait_s()
        fits, tokens = 0, 0
        for request in waiting:
            cost = self._cost(request.texts)
            if fits and tokens + cost > self.max_batch_tokens:
                break
            fits, tokens = fits + 1, tokens + cost
        if fits == len(waiting) and tokens < self.max_batch_tokens and (
                now < self._gathering_until):
            return self._gathering_until
        self._gathering_until = None
        self._groups.extend(group_by_options([waiting.take() for _ in range(fits)]))
        return None

    def execute(self) -> Step:
        """The next gathered group's engine call."""
        return self._run(self._groups.popleft()) if self._groups else Step()

    def _wait_s(self) -> float:
        """How long to wait for more requests once the queue is empty."""
        if self.wait_policy == "always" or self.arrivals.expects_within(self.max_wait_s):
            return self.max_wait_s
        return 0.0

    def _run(self, group: list[Request]) -> Step:
        """One engine call for ``group``; every request gets its own slice."""
        texts = [text for request in group for text in request.texts]
        pairs = [request.pair for request in group for _ in request.texts]
        started, steps = time.perf_counter(), self.engine.decode_steps()
        try:
            results = self.engine.translate(texts, group[0].options, pairs)
        except Exception as err:  # the engine failed: every caller of this call learns why
            return Step(done=[(request, err) for request in group], failure=err)
        done: list[tuple[Request, Result]] = []
        offset = 0
        for request in group:
            done.append((request, results[offset: offset + len(request.texts)]))
            offset += len(request.texts)
        report = BatchReport(
            texts=len(results), requests=len(group),
            queue_waits=[started - request.enqueued for request in group],
            seconds=time.perf_counter() - started,
            source_tokens=sum(r.source_tokens for r in results),
            target_tokens=sum(r.target_tokens for r in results),
            decode_steps=self.engine.decode_steps() - steps)
        return Step(done=done, report=report)


def group_by_options(batch: list[Request]) -> list[list[Request]]:
    """Split a batch into groups with equal options, in order of first appearance."""
    groups: dict[DecodeOptions, list[Request]] = {}
    for request in batch:
        groups.setdefault(request.options, []).append(request)
    return list(groups.values())
