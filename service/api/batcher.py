"""Cross-request dynamic batching: one :class:`Batcher` per model owns the queue and the loop.

Routes only ``await batcher.submit(texts, options, timeout=...)`` (one request, one result
list) or ``batcher.submit_each(texts, options, timeout=...)`` (one queued work item per text,
one future each, for streaming). The loop takes the oldest
queued request, gathers more until the source-token budget is reached or ``max_wait_s`` has
passed, splits what it gathered by decoding options (requests with different beams cannot
share a search), runs one engine call per group in the model's worker thread and hands every
request exactly its own slice of the results, in order.

Waiting for company only pays when company is likely: with ``wait_policy="adaptive"`` (the
default) the loop waits only when the median of the recent gaps between arrivals is within
``max_wait_s`` (:class:`ArrivalGaps`), so a lone request into an idle engine starts at once
while the bursts of many clients are still gathered; ``"always"`` waits every time.

A full queue raises :class:`QueueFullError` at once (the caller answers 503); a request whose
deadline passes raises :class:`DeadlineExceededError` (504); a request whose caller went away
(its task was cancelled) is dropped if it has not started yet.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Literal, Protocol

from service.inference.options import DecodeOptions
from service.inference.translator import Translation, Translator

log = logging.getLogger(__name__)


class Engine(Protocol):
    """What a batcher drives: a blocking batched ``translate`` (run in a worker thread)."""

    def translate(self, texts: list[str], options: DecodeOptions) -> list[Translation]:
        """One translation per text, in order."""
        ...

    def decode_steps(self) -> int:
        """Decoder calls made so far (a running total)."""
        ...


class TranslatorEngine:
    """:class:`Translator` behind the batcher's :class:`Engine` protocol."""

    def __init__(self, translator: Translator) -> None:
        self.translator = translator
        self.manifest = translator.manifest
        self.provider = translator.provider

    def translate(self, texts: list[str], options: DecodeOptions) -> list[Translation]:
        """Blocking batched translation (scores always on; the service hides them)."""
        return self.translator.translate(texts, options)

    def decode_steps(self) -> int:
        """Decoder calls so far."""
        return int(self.translator.model.steps)


class QueueFullError(Exception):
    """The model's queue is at capacity; retry after ``retry_after`` seconds."""

    def __init__(self, capacity: int, retry_after: int = 1) -> None:
        super().__init__(f"the queue is full ({capacity} requests waiting)")
        self.capacity = capacity
        self.retry_after = retry_after


class DeadlineExceededError(Exception):
    """The request's deadline passed before its translations were ready."""


class BatcherClosedError(Exception):
    """The batcher is shutting down and takes no more work."""


@dataclass(frozen=True)
class BatchReport:
    """What one engine call did, for metrics."""

    texts: int
    requests: int
    queue_waits: list[float]  # seconds each request waited before its batch started
    seconds: float
    source_tokens: int
    target_tokens: int
    decode_steps: int


def approx_tokens(texts: Sequence[str]) -> int:
    """Cheap source-token estimate (about 4 characters per subword, plus eos)."""
    return sum(len(text) // 4 + 2 for text in texts)


@dataclass(eq=False)
class _Work:
    texts: list[str]
    options: DecodeOptions
    future: asyncio.Future[list[Translation]]
    cost: int
    enqueued: float = field(default_factory=time.perf_counter)


_STOP = object()  # wakes an idle loop when the batcher closes

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


class Batcher:
    """The queue, the batching loop and the worker thread of one model."""

    def __init__(self, engine: Engine, *, max_batch_tokens: int = 4096,
                 max_wait_s: float = 0.005, queue_size: int = 256,
                 cost: Callable[[Sequence[str]], int] = approx_tokens,
                 on_batch: Callable[[BatchReport], None] | None = None,
                 name: str = "model", wait_policy: WaitPolicy = "adaptive") -> None:
        self.engine = engine
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_s
        self.wait_policy = wait_policy
        self.arrivals = ArrivalGaps()
        self.queue_size = queue_size
        self.name = name
        self._cost = cost
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Work | object] = asyncio.Queue(maxsize=queue_size)
        self._carry: _Work | None = None  # taken from the queue, did not fit the last batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"engine-{name}")
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def depth(self) -> int:
        """Requests waiting for a batch."""
        return self._queue.qsize() + (self._carry is not None)

    def depth_of(self) -> float:
        """``depth`` as a callable (for a live gauge)."""
        return float(self.depth)

    def start(self) -> None:
        """Start the loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.name)

    async def submit(self, texts: list[str], options: DecodeOptions, *,
                     timeout: float) -> list[Translation]:
        """Queue ``texts`` and wait (at most ``timeout`` seconds) for their translations."""
        self._check_open()
        future: asyncio.Future[list[Translation]] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Work(list(texts), options, future, self._cost(texts)))
        except asyncio.QueueFull:
            raise QueueFullError(self.queue_size) from None
        self.arrivals.record(time.perf_counter())
        return await within_deadline(future, timeout)

    def submit_each(self, texts: list[str], options: DecodeOptions, *,
                    timeout: float) -> list[asyncio.Future[Translation]]:
        """Queue every text as its own work item; one future per text, in order.

        Synchronous (call it on the running event loop): nothing is awaited, the futures are
        returned at once and complete independently as their batches finish (an item may
        share an engine call with any other queued work, or not). Semantics:

        - all or nothing: raises :class:`BatcherClosedError` when closing and
          :class:`QueueFullError` when the queue has no room for *all* the texts, before any
          of them is queued;
        - each future fails with :class:`DeadlineExceededError` once ``timeout`` seconds
          have passed without its result (its work is dropped if still queued);
        - cancelling a future drops its work if it has not started yet (a disconnected
          client cancels the futures it no longer needs);
        - an engine failure or shutdown fails the future with the error ``submit`` raises.
        """
        self._check_open()
        if self._queue.maxsize > 0 and self._queue.qsize() + len(texts) > self._queue.maxsize:
            raise QueueFullError(self.queue_size)
        loop = asyncio.get_running_loop()
        futures = []
        for text in texts:
            work: asyncio.Future[list[Translation]] = loop.create_future()
            self._queue.put_nowait(_Work([text], options, work, self._cost([text])))
            futures.append(linked_future(work, timeout))
        self.arrivals.record(time.perf_counter())
        return futures

    def _check_open(self) -> None:
        if self._closing or self._task is None:
            raise BatcherClosedError(f"{self.name} is not accepting work")

    async def close(self, timeout: float) -> None:
        """Stop taking work, finish what is queued (up to ``timeout``), then fail the rest."""
        self._closing = True
        with suppress(asyncio.QueueFull):
            self._queue.put_nowait(_STOP)
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
                with suppress(asyncio.CancelledError):
                    await self._task
        self._fail_queued()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _fail_queued(self) -> None:
        pending = [self._carry] if self._carry else []
        self._carry = None
        while not self._queue.empty():
            pending.append(self._queue.get_nowait())  # type: ignore[arg-type]
        for work in pending:
            if isinstance(work, _Work) and not work.future.done():
                work.future.set_exception(BatcherClosedError("the server is shutting down"))

    async def _loop(self) -> None:
        while True:
            batch = await self._collect()
            if batch is None:
                return
            for group in group_by_options(batch):
                await self._run(group)

    async def _collect(self) -> list[_Work] | None:
        """The next batch: the oldest live request plus whatever fits the budget in time."""
        first = await self._next_live()
        if first is None:
            return None
        batch, tokens = [first], first.cost
        until = asyncio.get_running_loop().time() + self._wait_s()
        while tokens < self.max_batch_tokens:
            item = await self._get_until(until)
            if not isinstance(item, _Work):
                break
            if item.future.done():  # deadline passed or caller gone while queued
                continue
            if tokens + item.cost > self.max_batch_tokens:
                self._carry = item
                break
            batch.append(item)
            tokens += item.cost
        return batch

    def _wait_s(self) -> float:
        """How long to wait for more requests once the queue is empty."""
        if self.wait_policy == "always" or self.arrivals.expects_within(self.max_wait_s):
            return self.max_wait_s
        return 0.0

    async def _next_live(self) -> _Work | None:
        """Block for the next request that still has a waiting caller; None once closed."""
        while True:
            if self._carry is not None:
                item: _Work | object = self._carry
                self._carry = None
            elif self._closing and self._queue.empty():
                return None
            else:
                item = await self._queue.get()
            if isinstance(item, _Work) and not item.future.done():
                return item

    async def _get_until(self, until: float) -> _Work | object | None:
        if not self._queue.empty():
            return self._queue.get_nowait()
        remaining = until - asyncio.get_running_loop().time()
        if remaining <= 0:
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), remaining)
        except TimeoutError:
            return None

    async def _run(self, group: list[_Work]) -> None:
        """One engine call for ``group``; every request gets its own slice."""
        live = [work for work in group if not work.future.done()]
        if not live:
            return
        texts = [text for work in live for text in work.texts]
        started = time.perf_counter()
        steps = self.engine.decode_steps()
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self.engine.translate, texts,
                                                 live[0].options)
        except asyncio.CancelledError:
            _fail(live, BatcherClosedError("the server is shutting down"))
            raise
        except Exception as err:  # the engine failed: every caller of this batch learns why
            log.exception("engine call failed", extra={"fields": {"model": self.name}})
            _fail(live, err)
            return
        offset = 0
        for work in live:
            mine = results[offset: offset + len(work.texts)]
            offset += len(work.texts)
            if not work.future.done():
                work.future.set_result(mine)
        self._report(live, results, started, steps)

    def _report(self, live: list[_Work], results: list[Translation], started: float,
                steps: int) -> None:
        if self._on_batch is None:
            return
        report = BatchReport(
            texts=len(results), requests=len(live),
            queue_waits=[started - work.enqueued for work in live],
            seconds=time.perf_counter() - started,
            source_tokens=sum(r.source_tokens for r in results),
            target_tokens=sum(r.target_tokens for r in results),
            decode_steps=self.engine.decode_steps() - steps)
        send_report(self._on_batch, report)


async def within_deadline(future: asyncio.Future[list[Translation]], timeout: float
                          ) -> list[Translation]:
    """The future's result, or :class:`DeadlineExceededError` after ``timeout`` seconds (the
    future is then cancelled, which drops its queued work)."""
    try:
        return await asyncio.wait_for(future, timeout)
    except TimeoutError:
        raise DeadlineExceededError(f"no result within the {timeout:g} s deadline") from None


def send_report(on_batch: Callable[[BatchReport], None], report: BatchReport) -> None:
    """Hand a report to the metrics callback; metrics must never break serving."""
    try:
        on_batch(report)
    except Exception:
        log.exception("batch report failed")


def group_by_options(batch: list[_Work]) -> list[list[_Work]]:
    """Split a batch into groups with equal options, in order of first appearance."""
    groups: dict[DecodeOptions, list[_Work]] = {}
    for work in batch:
        groups.setdefault(work.options, []).append(work)
    return list(groups.values())


def _fail(works: list[_Work], error: BaseException) -> None:
    for work in works:
        if not work.future.done():
            work.future.set_exception(error)


def linked_future(work: asyncio.Future[list[Translation]],
            timeout: float) -> asyncio.Future[Translation]:
    """The caller's future of one queued text, linked both ways to the batcher's ``work``
    future: ``work``'s outcome is copied to it; cancelling it, or its deadline passing,
    cancels ``work`` (which the loop then skips if it has not started)."""
    loop = asyncio.get_running_loop()
    out: asyncio.Future[Translation] = loop.create_future()

    def expire() -> None:
        if not out.done():
            out.set_exception(DeadlineExceededError(
                f"no result within the {timeout:g} s deadline"))

    timer = loop.call_later(timeout, expire)

    def deliver(done: asyncio.Future[list[Translation]]) -> None:
        if out.done():
            return
        if done.cancelled():
            out.cancel()
            return
        error = done.exception()
        if error is not None:
            out.set_exception(error)
        else:
            out.set_result(done.result()[0])

    def finished(_: asyncio.Future[Translation]) -> None:
        timer.cancel()
        work.cancel()  # no-op once it has a result; otherwise the loop drops it

    work.add_done_callback(deliver)
    out.add_done_callback(finished)
    return out
