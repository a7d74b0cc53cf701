"""Continuous (iteration-level) batching: the same interface as :class:`Batcher`, but requests
join and leave the running decode loop between two decoder steps.

The decode loop runs in the model's own worker thread and never waits for the event loop: the
event loop only posts commands (admit a request, drop one) to a thread-safe inbox, and the
worker posts results back with ``call_soon_threadsafe``. One worker iteration: read the inbox
(blocking only when nothing is decoding), drop the rows of requests whose caller went away
(deadline passed, client disconnected), admit waiting requests in arrival order while the
running ones stay under the token budget (``beam * source tokens`` per request; the oldest
waiting request is never overtaken, so none starves), then one decoder step of every running
search. With ``overlap_encoder`` (the default) the admitted requests are encoded in a second
thread during that step and join after it (``DecodeLoop.step_and_admit``): the step leaves
part of the cores idle, which the encoder uses (in process the Transformer bundle's loop gained
5-9 % throughput; over HTTP the LSTM bundle, whose step leaves little idle, lost 9 % of its
saturated throughput: docs/benchmarks.md, ninth session). A request whose sentences are all done is
answered at once, without waiting for the rest of its batch.

The queue bound (requests submitted but not yet admitted), ``Retry-After`` on overload and
per-request deadlines are those of :class:`Batcher`; results are the ones each request gets
alone (``service.inference.continuous``).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import count

from service.api.batcher import (
    BatcherClosedError,
    BatchReport,
    DecodeOptions,
    QueueFullError,
    approx_tokens,
    linked_future,
    send_report,
    within_deadline,
)
from service.inference.continuous import Arrival, DecodeLoop, Outcome
from service.inference.translator import Translation

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Request:
    texts: list[str]
    options: DecodeOptions
    future: asyncio.Future[list[Translation]]
    cost: int  # beam * approximate source tokens
    key: int = 0
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class _Drop:
    key: int


_STOP = object()


class ContinuousBatcher:
    """The inbox, the worker thread and its decode loop, for one model."""

    def __init__(self, decode_loop: DecodeLoop, *, max_batch_tokens: int = 4096,
                 queue_size: int = 256, name: str = "model",
                 cost: Callable[[Sequence[str]], int] = approx_tokens,
                 on_batch: Callable[[BatchReport], None] | None = None,
                 overlap_encoder: bool = True) -> None:
        self.decode_loop = decode_loop
        self.max_batch_tokens = max_batch_tokens
        self.queue_size = queue_size
        self.name = name
        self._cost = cost
        self._on_batch = on_batch
        self._inbox: queue.SimpleQueue[_Request | _Drop | object] = queue.SimpleQueue()
        self._keys = count()
        self._lock = threading.Lock()
        self._waiting_count = 0  # submitted, not yet admitted (the bounded queue)
        # worker-thread state
        self._waiting: deque[_Request] = deque()
        self._active: dict[int, _Request] = {}
        self._stopping = False
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self._encoder = (ThreadPoolExecutor(1, thread_name_prefix=f"encoder-{name}")
                         if overlap_encoder else None)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._finished: asyncio.Future[None] | None = None

    @property
    def overlap_encoder(self) -> bool:
        """Whether arrivals are encoded in a second thread during the decoder step."""
        return self._encoder is not None

    @property
    def depth(self) -> int:
        """Requests waiting to join the decode loop."""
        return self._waiting_count

    def depth_of(self) -> float:
        """``depth`` as a callable (for a live gauge)."""
        return float(self.depth)

    def start(self) -> None:
        """Start the worker thread; results are delivered on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._finished = self._loop.create_future()
        self._thread = threading.Thread(target=self._work, name=f"engine-{self.name}",
                                        daemon=True)
        self._thread.start()

    async def submit(self, texts: list[str], options: DecodeOptions, *,
                     timeout: float) -> list[Translation]:
        """Queue ``texts`` and wait (at most ``timeout`` seconds) for their translations."""
        future = self._enqueue([list(texts)], options)[0]
        return await within_deadline(future, timeout)

    def submit_each(self, texts: list[str], options: DecodeOptions, *,
                    timeout: float) -> list[asyncio.Future[Translation]]:
        """One queued request and one future per text (see :meth:`Batcher.submit_each`)."""
        works = self._enqueue([[text] for text in texts], options)
        return [linked_future(work, timeout) for work in works]

    def _enqueue(self, groups: list[list[str]], options: DecodeOptions
                 ) -> list[asyncio.Future[list[Translation]]]:
        """All or nothing: one request per group, or :class:`QueueFullError`."""
        if self._closing or self._loop is None:
            raise BatcherClosedError(f"{self.name} is not accepting work")
        with self._lock:
            if self._waiting_count + len(groups) > self.queue_size:
                raise QueueFullError(self.queue_size)
            self._waiting_count += len(groups)
        futures = []
        for texts in groups:
            future: asyncio.Future[list[Translation]] = self._loop.create_future()
            request = _Request(texts, options, future, options.beam_size * self._cost(texts),
                               next(self._keys))
            future.add_done_callback(self._dropper(request.key))
            self._inbox.put(request)
            futures.append(future)
        return futures

    def _dropper(self, key: int) -> Callable[[asyncio.Future[list[Translation]]], None]:
        """Done-callback of a request's future: tell the worker (a no-op once answered)."""
        def drop(_: asyncio.Future[list[Translation]]) -> None:
            self._inbox.put(_Drop(key))
        return drop

    async def close(self, timeout: float) -> None:
        """Stop taking work, finish what is waiting and running (up to ``timeout``), then
        fail the rest."""
        self._closing = True
        self._inbox.put(_STOP)
        if self._finished is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._finished), timeout)
            except TimeoutError:
                self._abort.set()
                await asyncio.shield(self._finished)

    # --- worker thread -------------------------------------------------------------------

    def _work(self) -> None:
        try:
            while not self._abort.is_set():
                self._read_inbox(block=not self._active and not self._waiting)
                if self._stopping and not self._active and not self._waiting:
                    break
                self._iterate()
        finally:
            if self._encoder is not None:
                self._encoder.shutdown(wait=False)
            self._fail_everything(BatcherClosedError("the server is shutting down"))
            assert self._loop is not None and self._finished is not None
            if not self._loop.is_closed():
                self._loop.call_soon_threadsafe(_settle, self._finished)

    def _read_inbox(self, block: bool) -> None:
        """Apply every pending command; wait for one when ``block``."""
        while True:
            try:
                item = self._inbox.get(block=block, timeout=0.5 if block else None)
            except queue.Empty:
                if block and not self._abort.is_set():
                    continue
                return
            block = False
            if isinstance(item, _Request):
                self._waiting.append(item)
            elif isinstance(item, _Drop):
                self._drop(item.key)
            else:
                self._stopping = True

    def _drop(self, key: int) -> None:
        if self._active.pop(key, None) is not None:
            self.decode_loop.cancel(key)
            return
        for request in self._waiting:
            if request.key == key:
                self._waiting.remove(request)
                self._admitted(1)
                return

    def _admissions(self) -> list[_Request]:
        """Waiting requests that join now: oldest first, within the budget."""
        used = sum(request.cost for request in self._active.values())
        admit: list[_Request] = []
        while self._waiting:
            head = self._waiting[0]
            if used + head.cost > self.max_batch_tokens and (self._active or admit):
                break
            admit.append(self._waiting.popleft())
            used += head.cost
        self._admitted(len(admit))
        return admit

    def _admitted(self, count: int) -> None:
        with self._lock:
            self._waiting_count -= count

    def _iterate(self) -> None:
        """Admit, then one decoder step; deliver whatever completed."""
        admit = self._admissions()
        started, steps = time.perf_counter(), self.decode_loop.translator.model.steps
        outcomes: list[Outcome] = []
        arrivals: list[Arrival] = []
        for request in admit:
            self._active[request.key] = request
            arrivals.append(Arrival(request.key, request.texts, request.options))
        try:
            if self._encoder is not None:
                outcomes += self.decode_loop.step_and_admit(arrivals, self._encoder)
            else:
                outcomes += self.decode_loop.admit(arrivals)
                outcomes += self.decode_loop.step()
        except Exception as err:  # the engine failed: every running request learns why
            log.exception("decode loop failed", extra={"fields": {"model": self.name}})
            self.decode_loop = DecodeLoop(self.decode_loop.translator)
            outcomes = [(key, err) for key in self._active]
        done: list[Delivery] = [(self._active.pop(key).future, result)
                                for key, result in outcomes if key in self._active]
        if done:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(_resolve, done)
        self._report(admit, outcomes, started, steps)

    def _fail_everything(self, error: Exception) -> None:
        pending = [*self._active.values(), *self._waiting]
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Request):
                pending.append(item)
        self._active.clear()
        self._waiting.clear()
        if pending and self._loop is not None and not self._loop.is_closed():
            failed: list[Delivery] = [(request.future, error) for request in pending]
            self._loop.call_soon_threadsafe(_resolve, failed)

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
        send_report(self._on_batch, report)


Delivery = tuple[asyncio.Future[list[Translation]], list[Translation] | Exception]


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
