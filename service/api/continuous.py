"""Continuous (iteration-level) batching: the same interface as :class:`Batcher`, but requests
join and leave the running decode loop between two decoder steps.

One asyncio task owns the queue and drives a :class:`DecodeLoop` in the model's worker thread,
one iteration per call: drop the rows of requests whose caller went away (deadline passed,
client disconnected), admit queued requests in arrival order while the running rows stay under
the token budget (``beam * source tokens`` per request; the oldest waiting request is never
overtaken, so none starves), then one decoder step of every running search. A request whose
sentences are all done is answered at once, without waiting for the rest of its batch.

The queue bound, ``Retry-After`` on overload and per-request deadlines are those of
:class:`Batcher`; results are the ones each request gets alone (``service.inference.continuous``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import count

from service.api.batcher import (
    BatcherClosedError,
    BatchReport,
    DeadlineExceededError,
    DecodeOptions,
    QueueFullError,
    approx_tokens,
    linked_future,
)
from service.inference.continuous import Arrival, DecodeLoop, Outcome
from service.inference.translator import Translation, make_options

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Request:
    texts: list[str]
    options: DecodeOptions
    future: asyncio.Future[list[Translation]]
    cost: int  # beam * approximate source tokens
    key: int = 0
    enqueued: float = field(default_factory=time.perf_counter)


_STOP = object()


class ContinuousBatcher:
    """The queue, the iteration loop and the worker thread of one model."""

    def __init__(self, decode_loop: DecodeLoop, *, max_batch_tokens: int = 4096,
                 queue_size: int = 256, name: str = "model",
                 cost: Callable[[Sequence[str]], int] = approx_tokens,
                 on_batch: Callable[[BatchReport], None] | None = None) -> None:
        self.decode_loop = decode_loop
        self.max_batch_tokens = max_batch_tokens
        self.queue_size = queue_size
        self.name = name
        self._cost = cost
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Request | object] = asyncio.Queue(maxsize=queue_size)
        self._carry: _Request | None = None  # oldest waiting request, did not fit yet
        self._active: dict[int, _Request] = {}
        self._keys = count()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"engine-{name}")
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def depth(self) -> int:
        """Requests waiting to join the loop."""
        return self._queue.qsize() + (self._carry is not None)

    def depth_of(self) -> float:
        """``depth`` as a callable (for a live gauge)."""
        return float(self.depth)

    @property
    def running_cost(self) -> int:
        """Budget used by the requests decoding now."""
        return sum(request.cost for request in self._active.values())

    def start(self) -> None:
        """Start the loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.name)

    async def submit(self, texts: list[str], options: DecodeOptions, *,
                     timeout: float) -> list[Translation]:
        """Queue ``texts`` and wait (at most ``timeout`` seconds) for their translations."""
        self._check_open()
        future: asyncio.Future[list[Translation]] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(self._request(list(texts), options, future))
        except asyncio.QueueFull:
            raise QueueFullError(self.queue_size) from None
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise DeadlineExceededError(
                f"no result within the {timeout:g} s deadline") from None

    def submit_each(self, texts: list[str], options: DecodeOptions, *,
                    timeout: float) -> list[asyncio.Future[Translation]]:
        """One queued request and one future per text (see :meth:`Batcher.submit_each`)."""
        self._check_open()
        if self._queue.qsize() + len(texts) > self.queue_size:
            raise QueueFullError(self.queue_size)
        loop = asyncio.get_running_loop()
        futures = []
        for text in texts:
            work: asyncio.Future[list[Translation]] = loop.create_future()
            self._queue.put_nowait(self._request([text], options, work))
            futures.append(linked_future(work, timeout))
        return futures

    def _request(self, texts: list[str], options: DecodeOptions,
                 future: asyncio.Future[list[Translation]]) -> _Request:
        return _Request(texts, options, future, options.beam_size * self._cost(texts),
                        next(self._keys))

    def _check_open(self) -> None:
        if self._closing or self._task is None:
            raise BatcherClosedError(f"{self.name} is not accepting work")

    async def close(self, timeout: float) -> None:
        """Stop taking work, finish what is queued and running (up to ``timeout``), then
        fail the rest."""
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
        self._fail_all(BatcherClosedError("the server is shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _fail_all(self, error: Exception) -> None:
        pending = [*self._active.values(), *([self._carry] if self._carry else [])]
        self._active.clear()
        self._carry = None
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _Request):
                pending.append(item)
        for request in pending:
            if not request.future.done():
                request.future.set_exception(error)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            admit = await self._admissions()
            if admit is None:
                return
            drops = [key for key, request in self._active.items() if request.future.done()]
            for key in drops:
                del self._active[key]
            self._active.update((request.key, request) for request in admit)
            started = time.perf_counter()
            steps = self.decode_loop.translator.model.steps
            try:
                outcomes = await loop.run_in_executor(self._executor, self._iterate, admit,
                                                      drops)
            except asyncio.CancelledError:
                self._fail_all(BatcherClosedError("the server is shutting down"))
                raise
            except Exception as err:  # the engine failed: every running request learns why
                log.exception("decode loop failed", extra={"fields": {"model": self.name}})
                self.decode_loop = DecodeLoop(self.decode_loop.translator)
                for request in self._active.values():
                    if not request.future.done():
                        request.future.set_exception(err)
                self._active.clear()
                continue
            self._deliver(outcomes)
            self._report(admit, outcomes, started, steps)

    async def _admissions(self) -> list[_Request] | None:
        """Queued requests that join now, oldest first, within the budget; blocks while
        nothing runs; None once closed with nothing left."""
        admit: list[_Request] = []
        if not self._active:
            first = await self._next_live()
            if first is None:
                return None
            admit.append(first)
        used = self.running_cost + sum(request.cost for request in admit)
        while (item := self._take_nowait()) is not None:
            if used + item.cost > self.max_batch_tokens and (self._active or admit):
                self._carry = item
                break
            admit.append(item)
            used += item.cost
        return admit

    async def _next_live(self) -> _Request | None:
        while True:
            item = self._take_nowait()
            if item is not None:
                return item
            if self._closing:
                return None
            got = await self._queue.get()
            if isinstance(got, _Request) and not got.future.done():
                return got

    def _take_nowait(self) -> _Request | None:
        """The carried or next queued request that still has a caller, if any."""
        if self._carry is not None:
            item: _Request | object = self._carry
            self._carry = None
            if isinstance(item, _Request) and not item.future.done():
                return item
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _Request) and not item.future.done():
                return item
        return None

    def _iterate(self, admit: list[_Request], drops: list[int]) -> list[Outcome]:
        """Worker thread: cancel, admit, one step."""
        outcomes: list[Outcome] = []
        for key in drops:
            self.decode_loop.cancel(key)
        arrivals = []
        for request in admit:
            options = request.options
            try:
                search = make_options(options.beam_size, options.num_hypotheses,
                                      options.length_penalty, 0, 0)
            except ValueError as err:
                outcomes.append((request.key, err))
                continue
            arrivals.append(Arrival(request.key, request.texts, search, options.max_length))
        outcomes += self.decode_loop.admit(arrivals)
        return outcomes + self.decode_loop.step()

    def _deliver(self, outcomes: list[Outcome]) -> None:
        for key, result in outcomes:
            request = self._active.pop(key, None)
            if request is None or request.future.done():
                continue
            if isinstance(result, Exception):
                request.future.set_exception(result)
            else:
                request.future.set_result(result)

    def _report(self, admit: list[_Request], outcomes: list[Outcome], started: float,
                steps: int) -> None:
        if self._on_batch is None:
            return
        done = [r for _, r in outcomes if not isinstance(r, Exception)]
        report = BatchReport(
            texts=self.decode_loop.running, requests=len(admit),
            queue_waits=[started - request.enqueued for request in admit],
            seconds=time.perf_counter() - started,
            source_tokens=sum(t.source_tokens for result in done for t in result),
            target_tokens=sum(t.target_tokens for result in done for t in result),
            decode_steps=self.decode_loop.translator.model.steps - steps)
        try:
            self._on_batch(report)
        except Exception:  # metrics must never break serving
            log.exception("batch report failed")
