"""What a scheduling strategy sees and does: the :class:`Request` it takes from the
:class:`Waiting` queue, the :class:`Step` it returns, the :class:`Strategy` protocol the
:class:`~service.api.batcher.Batcher` drives (request-level: ``request_level.py``;
iteration-level: ``iteration_level.py``), and the :class:`BatchReport` of a step."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from inference.languages import Pair
from inference.options import DecodeOptions
from inference.translator import Translation


@dataclass(frozen=True)
class BatchReport:
    """What one step did, for metrics."""

    texts: int
    requests: int
    queue_waits: list[float]  # seconds each request waited before its step started
    seconds: float
    source_tokens: int
    target_tokens: int
    decode_steps: int


def approx_tokens(texts: Sequence[str]) -> int:
    """Cheap source-token estimate (about 4 characters per subword, plus eos)."""
    return sum(len(text) // 4 + 2 for text in texts)


@dataclass(eq=False)
class Request:
    """One submitted request: its texts, options, languages and future; ``arrival`` is False
    for the second and later texts of one ``submit_each`` call (one client arrival)."""

    texts: list[str]
    options: DecodeOptions
    future: asyncio.Future[list[Translation]]
    key: int = 0
    arrival: bool = True
    enqueued: float = field(default_factory=time.perf_counter)
    queued: bool = True  # holds a place in the queue bound (until taken or cancelled)
    pair: Pair | None = None  # (source, target) of its texts; None: the model's exported pair


Result = list[Translation] | Exception


@dataclass
class Step:
    """What one executed step finished."""

    done: list[tuple[Request, Result]] = field(default_factory=list)
    report: BatchReport | None = None
    failure: Exception | None = None  # the engine failed (every request it ran learns why)


class Waiting:
    """The requests no strategy has taken yet, oldest first (worker thread only); taking one
    frees its place in the queue bound (``release``)."""

    def __init__(self, release: Callable[[Request], None]) -> None:
        self._items: deque[Request] = deque()
        self._release = release

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Request]:
        return iter(self._items)

    def oldest(self) -> Request:
        """The request waiting longest (the queue must not be empty)."""
        return self._items[0]

    def take(self) -> Request:
        """Remove and return the oldest request: the strategy runs it now."""
        request = self._items.popleft()
        self._release(request)
        return request

    def append(self, request: Request) -> None:
        """Queue a new request."""
        self._items.append(request)

    def discard(self, request: Request) -> bool:
        """Forget a dropped request; whether it was waiting."""
        try:
            self._items.remove(request)
        except ValueError:
            return False
        return True

    def clear(self) -> None:
        """Forget every request."""
        self._items.clear()


class Strategy(Protocol):
    """Schedules waiting requests onto the engine; driven by one worker thread."""

    @property
    def busy(self) -> bool:
        """Whether requests it took are not answered yet."""
        ...

    def arrived(self, request: Request) -> None:
        """A request was queued (before any step sees it)."""
        ...

    def schedule(self, waiting: Waiting) -> float | None:
        """Take what runs next from ``waiting`` (oldest first); the ``perf_counter`` time to
        look again when it chose to wait for more requests instead."""
        ...

    def execute(self) -> Step:
        """Run what is scheduled (one engine call or decoder step); what finished."""
        ...

    def cancel(self, request: Request) -> None:
        """A request it took lost its caller: stop it when it can."""
        ...

    def close(self) -> None:
        """Release the strategy's own threads."""
        ...
