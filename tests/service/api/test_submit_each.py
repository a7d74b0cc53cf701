"""``Batcher.submit_each``: one queued request and one future per text (for streaming), with
each scheduling strategy."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from inference.languages import Pair
from inference.translator import Translation
from service.api.batcher import (
    Batcher,
    BatcherClosedError,
    DeadlineExceededError,
    DecodeOptions,
    QueueFullError,
)
from service.api.iteration_level import IterationLevel
from service.api.request_level import RequestLevel
from service.api.scheduling import Strategy
from tests.service.api.fakes import FakeLoop, until_depth

T = TypeVar("T")
GREEDY = DecodeOptions(beam_size=1)
STRATEGIES = ["request", "iteration"]


@dataclass
class StepEngine:
    """Upper-cases texts; each call waits for one permit (``allow``) when ``gated``; texts
    containing ``boom`` fail the call."""

    gated: bool = False
    permits: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    calls: list[list[str]] = field(default_factory=list)
    called: threading.Condition = field(default_factory=threading.Condition)

    def translate(self, texts: list[str], options: DecodeOptions,
                  pairs: Sequence[Pair | None] | None = None) -> list[Translation]:
        with self.called:
            self.calls.append(list(texts))
            self.called.notify_all()
        if self.gated:
            assert self.permits.acquire(timeout=5), "the test never allowed this call"
        if any("boom" in text for text in texts):
            raise RuntimeError("engine exploded")
        return [Translation(text.upper(), -1.0, "eos", source_tokens=2, target_tokens=3)
                for text in texts]

    def decode_steps(self) -> int:
        return len(self.calls)

    def decode_loop(self) -> FakeLoop:
        return FakeLoop(self)

    def allow(self, calls: int = 1) -> None:
        """Let ``calls`` more engine calls finish."""
        for _ in range(calls):
            self.permits.release()

    async def until_called(self, calls: int) -> None:
        """Wait (at most 5 s) until ``calls`` calls have started."""
        def wait() -> bool:
            with self.called:
                return self.called.wait_for(lambda: len(self.calls) >= calls, 5)
        assert await asyncio.to_thread(wait), f"{len(self.calls)} calls, expected {calls}"


def run(make: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(make(), 20))


def strategy(kind: str, engine: StepEngine, max_batch_tokens: int) -> Strategy:
    """Request-level (no wait for company) or iteration-level scheduling over ``engine``."""
    if kind == "request":
        return RequestLevel(engine, max_batch_tokens=max_batch_tokens, max_wait_s=0)
    return IterationLevel(engine, engine.decode_loop(), max_batch_tokens=max_batch_tokens)


def one_per_call(kind: str, engine: StepEngine, queue_size: int = 256) -> Batcher:
    """A started batcher whose every engine call takes a single queued request."""
    batcher = Batcher(strategy(kind, engine, 1), queue_size=queue_size)
    batcher.start()
    return batcher


@pytest.mark.parametrize("kind", STRATEGIES)
def test_items_complete_independently_in_their_own_calls(kind: str) -> None:
    engine = StepEngine(gated=True)

    async def scenario() -> None:
        batcher = one_per_call(kind, engine)
        futures = batcher.submit_each(["a", "b", "c"], GREEDY, timeout=5)
        assert len(futures) == 3 and batcher.depth >= 2
        engine.allow()
        first = await futures[0]
        await engine.until_called(2)  # "b" waits in the engine for its permit
        assert first.text == "A" and not futures[1].done() and not futures[2].done()
        engine.allow(2)
        assert [(await f).text for f in futures[1:]] == ["B", "C"]
        await batcher.close(1)

    run(scenario)
    assert engine.calls == [["a"], ["b"], ["c"]]


def test_items_may_share_a_call_and_match_submit() -> None:
    engine = StepEngine()

    async def scenario() -> tuple[list[Translation], list[Translation]]:
        batcher = Batcher(RequestLevel(engine, max_wait_s=0.05))
        batcher.start()
        each = await asyncio.gather(*batcher.submit_each(["x", "y"], GREEDY, timeout=5))
        whole = await batcher.submit(["x", "y"], GREEDY, timeout=5)
        await batcher.close(1)
        return each, whole

    each, whole = run(scenario)
    assert each == whole
    assert engine.calls[0] == ["x", "y"]  # two work items, one engine call


@pytest.mark.parametrize("kind", STRATEGIES)
def test_full_queue_raises_before_anything_is_queued(kind: str) -> None:
    engine = StepEngine(gated=True)

    async def scenario() -> None:
        batcher = one_per_call(kind, engine, queue_size=3)
        running = batcher.submit_each(["run"], GREEDY, timeout=5)
        await engine.until_called(1)  # "run" is in the engine; the queue is empty
        queued = batcher.submit_each(["a", "b"], GREEDY, timeout=5)
        assert batcher.depth == 2
        with pytest.raises(QueueFullError) as caught:
            batcher.submit_each(["c", "d"], GREEDY, timeout=5)  # room for one, not two
        assert caught.value.capacity == 3 and batcher.depth == 2
        last = batcher.submit_each(["c"], GREEDY, timeout=5)
        engine.allow(4)
        results = await asyncio.gather(*running, *queued, *last)
        assert [r.text for r in results] == ["RUN", "A", "B", "C"]
        await batcher.close(1)

    run(scenario)
    assert ["d"] not in engine.calls


@pytest.mark.parametrize("kind", STRATEGIES)
def test_deadline_fails_each_item_and_drops_its_queued_work(kind: str) -> None:
    engine = StepEngine(gated=True)

    async def scenario() -> None:
        batcher = one_per_call(kind, engine)
        slow = batcher.submit_each(["slow"], GREEDY, timeout=5)
        await engine.until_called(1)
        late = batcher.submit_each(["late1", "late2"], GREEDY, timeout=0.05)
        for future in late:
            with pytest.raises(DeadlineExceededError, match=r"0\.05 s deadline"):
                await future
        await until_depth(batcher, 0)  # both dropped while "slow" holds the engine
        engine.allow()
        assert (await slow[0]).text == "SLOW"
        await batcher.close(1)

    run(scenario)
    assert engine.calls == [["slow"]]  # the late items never reached the engine


@pytest.mark.parametrize("kind", STRATEGIES)
def test_cancelled_item_is_dropped_and_the_others_complete(kind: str) -> None:
    engine = StepEngine(gated=True)

    async def scenario() -> None:
        batcher = one_per_call(kind, engine)
        futures = batcher.submit_each(["a", "gone", "c"], GREEDY, timeout=5)
        await engine.until_called(1)  # "a" is in the engine
        futures[1].cancel()  # what a disconnected stream does with what it no longer needs
        await until_depth(batcher, 1)  # only "c" still waits
        engine.allow(2)
        assert (await futures[0]).text == "A" and (await futures[2]).text == "C"
        await batcher.close(1)

    run(scenario)
    assert engine.calls == [["a"], ["c"]]


@pytest.mark.parametrize("kind", STRATEGIES)
def test_engine_failure_fails_only_the_items_of_that_call(kind: str) -> None:
    engine = StepEngine()

    async def scenario() -> None:
        batcher = one_per_call(kind, engine)
        ok, bad, after = batcher.submit_each(["ok", "boom", "after"], GREEDY, timeout=5)
        assert (await ok).text == "OK"
        with pytest.raises(RuntimeError, match="engine exploded"):
            await bad
        assert (await after).text == "AFTER"
        await batcher.close(1)

    run(scenario)


@pytest.mark.parametrize("kind", STRATEGIES)
def test_closed_batcher_refuses_and_close_fails_what_is_queued(kind: str) -> None:
    engine = StepEngine(gated=True)

    async def scenario() -> None:
        batcher = one_per_call(kind, engine)
        running, queued = batcher.submit_each(["run", "queued"], GREEDY, timeout=5)
        await engine.until_called(1)
        await batcher.close(0.05)
        engine.allow()
        for future in (running, queued):
            with pytest.raises(BatcherClosedError):
                await future
        with pytest.raises(BatcherClosedError):
            batcher.submit_each(["late"], GREEDY, timeout=5)

    run(scenario)
    never_started = Batcher(RequestLevel(StepEngine()))
    with pytest.raises(BatcherClosedError):
        never_started.submit_each(["x"], GREEDY, timeout=5)
