"""One :class:`Batcher` per model owns the queue, the deadlines, the futures, cancellation and
the drain; a :class:`Strategy` decides what runs (request-level: ``request_level.py``;
iteration-level: ``iteration_level.py``).

Routes only ``await batcher.submit(texts, options, timeout=..., pair=...)`` (one request, one
result list) or ``batcher.submit_each(texts, options, timeout=..., pair=...)`` (one request per
text, one future each, for streaming); ``pair`` is the request's ``(source, target)`` languages
(None: the model's exported pair), and requests of different pairs share engine calls.
The event loop never waits for the engine: it posts commands (a request, a dropped request,
stop) to a thread-safe inbox, and the model's worker thread answers with
``call_soon_threadsafe``. One worker iteration: read the inbox (blocking when there is nothing
to do, or until the time the strategy asked to be woken), drop the requests whose caller went
away (deadline passed, client disconnected), then one step as vLLM's ``EngineCore.step``: the
strategy schedules from the waiting requests (:meth:`Strategy.schedule`), executes one engine
call or decoder step (:meth:`Strategy.execute`), and the batcher delivers what finished.

A full queue raises :class:`QueueFullError` at once (the caller answers 503); a request whose
deadline passes raises :class:`DeadlineExceededError` (504); a request whose caller went away
is dropped if it is still waiting, and its rows freed if the strategy can stop it mid-way.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from itertools import count
from typing import TypeVar

from inference.languages import Pair
from inference.options import DecodeOptions
from inference.translator import Translation
from service.api.scheduling import BatchReport, Request, Result, Strategy, Waiting

__all__ = ["Batcher", "BatcherClosedError", "DeadlineExceededError",
           "QueueFullError"]
log = logging.getLogger(__name__)
T = TypeVar("T")
POLL_S = 0.5  # an idle worker looks at the abort flag this often


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
class _Drop:
    request: Request


_STOP = object()  # tells the worker to finish what it has, then exit


class Batcher:
    """The queue, the worker thread and the futures of one model."""

    def __init__(self, strategy: Strategy, *, queue_size: int = 256, name: str = "model",
                 on_batch: Callable[[BatchReport], None] | None = None) -> None:
        self.strategy = strategy
        self.queue_size = queue_size
        self.name = name
        self._on_batch = on_batch
        self._inbox: queue.SimpleQueue[Request | _Drop | object] = queue.SimpleQueue()
        self._keys = count()
        self._lock = threading.Lock()
        self._waiting_count = 0  # queued requests not taken nor cancelled (the bound)
        self._unanswered: set[asyncio.Future[list[Translation]]] = set()
        # worker-thread state
        self._waiting = Waiting(self._release)
        self._stopping = False
        self._abort = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._finished: asyncio.Future[None] | None = None

    @property
    def depth(self) -> int:
        """Requests waiting for the strategy to take them."""
        return self._waiting_count

    @property
    def aborted(self) -> bool:
        """Whether ``close`` ran out of time and failed what was left."""
        return self._abort.is_set()

    def depth_of(self) -> float:
        """``depth`` as a callable (for a live gauge)."""
        return float(self.depth)

    def start(self) -> None:
        """Start the worker thread; results are delivered on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._finished = self._loop.create_future()
        threading.Thread(target=self._work, name=f"engine-{self.name}", daemon=True).start()

    async def submit(self, texts: list[str], options: DecodeOptions, *,
                     timeout: float, pair: Pair | None = None) -> list[Translation]:
        """Queue ``texts`` and wait (at most ``timeout`` seconds) for their translations."""
        future = self._enqueue([list(texts)], options, pair)[0]
        return await within_deadline(future, timeout)

    def submit_each(self, texts: list[str], options: DecodeOptions, *,
                    timeout: float, pair: Pair | None = None
                    ) -> list[asyncio.Future[Translation]]:
        """Queue every text as its own request; one future per text, in order.

        Synchronous (call it on the running event loop): nothing is awaited, the futures are
        returned at once and complete independently. Semantics:

        - all or nothing: raises :class:`BatcherClosedError` when closing and
          :class:`QueueFullError` when the queue has no room for *all* the texts, before any
          of them is queued;
        - each future fails with :class:`DeadlineExceededError` once ``timeout`` seconds
          have passed without its result (its request is dropped);
        - cancelling a future drops its request (a disconnected client cancels the futures it
          no longer needs);
        - an engine failure or shutdown fails the future with the error ``submit`` raises.
        """
        works = self._enqueue([[text] for text in texts], options, pair)
        return [linked_future(work, timeout) for work in works]

    def _enqueue(self, groups: list[list[str]], options: DecodeOptions, pair: Pair | None
                 ) -> list[asyncio.Future[list[Translation]]]:
        """All or nothing: one request per group, or :class:`QueueFullError`."""
        if self._closing or self._loop is None:
            raise BatcherClosedError(f"{self.name} is not accepting work")
        with self._lock:
            if self._waiting_count + len(groups) > self.queue_size:
                raise QueueFullError(self.queue_size)
            self._waiting_count += len(groups)
        futures = []
        for index, texts in enumerate(groups):
            future: asyncio.Future[list[Translation]] = self._loop.create_future()
            request = Request(texts, options, future, next(self._keys), arrival=index == 0,
                              pair=pair)
            self._unanswered.add(future)
            future.add_done_callback(self._on_done(request))
            self._inbox.put(request)
            futures.append(future)
        return futures

    def _on_done(self, request: Request) -> Callable[[asyncio.Future[list[Translation]]], None]:
        """Done-callback of a request's future: a cancelled one is dropped by the worker."""
        def done(future: asyncio.Future[list[Translation]]) -> None:
            self._unanswered.discard(future)
            if future.cancelled():
                self._release(request)
                self._inbox.put(_Drop(request))
        return done

    async def close(self, timeout: float) -> None:
        """Stop taking work, finish what is waiting and running (up to ``timeout``), then
        fail the rest (the step running then completes in the background)."""
        self._closing = True
        self._inbox.put(_STOP)
        if self._finished is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._finished), timeout)
        except TimeoutError:
            self._abort.set()
            self._fail_unanswered(BatcherClosedError("the server is shutting down"))

    # --- worker thread -------------------------------------------------------------------

    def _work(self) -> None:
        wake_at: float | None = None
        try:
            while not self._abort.is_set():
                has_work = bool(self._waiting) or self.strategy.busy
                self._read_inbox(wait=not has_work and not self._stopping, until=wake_at)
                if not self._waiting and not self.strategy.busy:
                    if self._stopping:
                        break
                    wake_at = None
                    continue
                wake_at = self._step()
        finally:
            self.strategy.close()
            self._fail_everything(BatcherClosedError("the server is shutting down"))
            assert self._finished is not None
            self._post(_settle, self._finished)

    def _read_inbox(self, *, wait: bool, until: float | None) -> None:
        """Apply every pending command. With ``wait``, block until one comes; with ``until``
        (a ``perf_counter`` time), block until one comes or that time does."""
        block = wait or until is not None
        while True:
            if block:
                item = self._next_command(until)
                if item is None:
                    return
                block = False
            else:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    return
            self._apply(item)

    def _next_command(self, until: float | None) -> Request | _Drop | object | None:
        """The next command, or None once ``until`` has come or the batcher aborts."""
        while not self._abort.is_set():
            timeout = POLL_S if until is None else min(POLL_S, until - time.perf_counter())
            if timeout <= 0:
                return None
            try:
                return self._inbox.get(timeout=timeout)
            except queue.Empty:
                continue
        return None

    def _apply(self, item: Request | _Drop | object) -> None:
        if isinstance(item, Request):
            self._waiting.append(item)
            self.strategy.arrived(item)
        elif isinstance(item, _Drop):
            self._drop(item.request)
        else:
            self._stopping = True

    def _drop(self, request: Request) -> None:
        if not self._waiting.discard(request):
            self.strategy.cancel(request)

    def _release(self, request: Request) -> None:
        """Free the request's place in the queue bound (once: taken or cancelled)."""
        with self._lock:
            if request.queued:
                request.queued = False
                self._waiting_count -= 1

    def _step(self) -> float | None:
        """One strategy step; deliver what finished. The time to wake at, if any."""
        wake_at = self.strategy.schedule(self._waiting)
        if wake_at is not None:
            return wake_at
        step = self.strategy.execute()
        if step.failure is not None:
            log.error("engine call failed", exc_info=step.failure,
                      extra={"fields": {"model": self.name}})
        if step.done:
            self._post(_resolve, [(request.future, result) for request, result in step.done])
        if step.report is not None and self._on_batch is not None:
            send_report(self._on_batch, step.report)
        return None

    def _fail_everything(self, error: Exception) -> None:
        """Fail every request not answered yet (on the event loop, after the deliveries
        already posted)."""
        self._waiting.clear()
        self._post(self._fail_unanswered, error)

    def _post(self, callback: Callable[[T], None], argument: T) -> None:
        """Run ``callback(argument)`` on the event loop, unless it has closed (an aborted
        drain leaves the step that was running to finish after the app is gone)."""
        assert self._loop is not None
        with suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, argument)

    def _fail_unanswered(self, error: Exception) -> None:
        _resolve([(future, error) for future in list(self._unanswered)])


Delivery = tuple[asyncio.Future[list[Translation]], Result]


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _resolve(results: list[Delivery]) -> None:
    """Event loop: set each future that still has a caller."""
    for future, result in results:
        if future.done():
            continue
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)


async def within_deadline(future: asyncio.Future[list[Translation]], timeout: float
                          ) -> list[Translation]:
    """The future's result, or :class:`DeadlineExceededError` after ``timeout`` seconds (the
    future is then cancelled, which drops its request)."""
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


def linked_future(work: asyncio.Future[list[Translation]],
                  timeout: float) -> asyncio.Future[Translation]:
    """The caller's future of one queued text, linked both ways to the batcher's ``work``
    future: ``work``'s outcome is copied to it; cancelling it, or its deadline passing,
    cancels ``work`` (which drops its request)."""
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
        work.cancel()  # no-op once it has a result; otherwise the worker drops it

    work.add_done_callback(deliver)
    out.add_done_callback(finished)
    return out
