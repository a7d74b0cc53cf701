"""The batcher with request-level scheduling and a scripted engine: merging, ordering,
grouping, deadlines, full queue, drain."""

from __future__ import annotations

import asyncio
import threading
import time
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
from service.api.request_level import ArrivalGaps, RequestLevel, WaitPolicy, group_by_options
from service.api.scheduling import BatchReport, Request, approx_tokens

T = TypeVar("T")
GREEDY = DecodeOptions(beam_size=1)
BEAM = DecodeOptions(beam_size=4)


@dataclass
class ScriptedEngine:
    """Upper-cases texts; records calls; optionally blocks until released or fails;
    ``entered`` is set once a call has started."""

    delay: float = 0.0
    gate: threading.Event | None = None
    fail: bool = False
    calls: list[tuple[list[str], DecodeOptions]] = field(default_factory=list)
    entered: threading.Event = field(default_factory=threading.Event)

    def translate(self, texts: list[str], options: DecodeOptions,
                  pairs: Sequence[Pair | None] | None = None) -> list[Translation]:
        self.calls.append((list(texts), options))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(5)
        if self.delay:
            threading.Event().wait(self.delay)
        if self.fail:
            raise RuntimeError("engine exploded")
        return [Translation(text.upper(), -1.0, "eos", source_tokens=2, target_tokens=3)
                for text in texts]

    def decode_steps(self) -> int:
        return 7 * len(self.calls)

    def decode_loop(self) -> None:
        return None

    async def until_entered(self) -> None:
        """Wait (at most 5 s) until the engine holds a call."""
        assert await asyncio.to_thread(self.entered.wait, 5), "the engine was never called"


def started(engine: ScriptedEngine, *, max_batch_tokens: int = 4096, max_wait_s: float = 0.005,
            queue_size: int = 256, on_batch: Callable[[BatchReport], None] | None = None,
            cost: Callable[[Sequence[str]], int] = approx_tokens,
            wait_policy: WaitPolicy = "adaptive") -> Batcher:
    """A started batcher with request-level scheduling over ``engine``."""
    strategy = RequestLevel(engine, max_batch_tokens=max_batch_tokens, max_wait_s=max_wait_s,
                            wait_policy=wait_policy, cost=cost)
    batcher = Batcher(strategy, queue_size=queue_size, on_batch=on_batch)
    batcher.start()
    return batcher


def run(make: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(make(), 20))


def test_concurrent_requests_share_engine_calls_and_keep_their_results() -> None:
    engine = ScriptedEngine(delay=0.02)
    reports: list[BatchReport] = []

    async def scenario() -> list[list[Translation]]:
        batcher = started(engine, max_wait_s=0.05, on_batch=reports.append)
        jobs = [batcher.submit([f"a{i}", f"b{i}"], GREEDY, timeout=5) for i in range(12)]
        results = await asyncio.gather(*jobs)
        await batcher.close(1)
        return results

    results = run(scenario)
    assert len(engine.calls) < 12
    for i, mine in enumerate(results):
        assert [r.text for r in mine] == [f"A{i}", f"B{i}"]
    assert sum(report.requests for report in reports) == 12
    assert sum(report.texts for report in reports) == 24
    assert reports[0].decode_steps == 7 and reports[0].source_tokens == 2 * reports[0].texts


def test_different_options_never_share_a_call() -> None:
    engine = ScriptedEngine()

    async def scenario() -> tuple[list[Translation], list[Translation]]:
        batcher = started(engine, max_wait_s=0.05)
        greedy, beam = await asyncio.gather(batcher.submit(["x"], GREEDY, timeout=5),
                                            batcher.submit(["y"], BEAM, timeout=5))
        await batcher.close(1)
        return greedy, beam

    greedy, beam = run(scenario)
    assert [r.text for r in greedy] == ["X"] and [r.text for r in beam] == ["Y"]
    assert sorted((texts, opts.beam_size) for texts, opts in engine.calls) == [
        (["x"], 1), (["y"], 4)]


def test_token_budget_splits_batches() -> None:
    engine = ScriptedEngine()

    async def scenario() -> None:
        batcher = started(engine, max_batch_tokens=10, max_wait_s=0.05,
                          cost=lambda texts: 4 * len(texts))
        await asyncio.gather(*(batcher.submit([str(i)], GREEDY, timeout=5) for i in range(6)))
        await batcher.close(1)

    run(scenario)
    assert [len(texts) for texts, _ in engine.calls] == [2, 2, 2]


def test_arrival_gaps_judge_whether_company_is_likely() -> None:
    gaps = ArrivalGaps(window=4)
    assert gaps.expects_within(0.005)  # no history: wait as configured
    for i in range(5):
        gaps.record(0.1 * i)  # one client, one request every 100 ms
    assert not gaps.expects_within(0.005) and gaps.expects_within(0.1)
    for i in range(3):
        gaps.record(1.0 + 0.001 * i)  # a burst after a long pause...
        assert not gaps.expects_within(0.005)
    gaps.record(1.003)  # ...counts once it is most of the window: gaps 0.6, 0.001 x 3
    assert gaps.expects_within(0.005)


@pytest.mark.parametrize(("policy", "waits"), [("adaptive", False), ("always", True)])
def test_lone_request_after_sparse_arrivals_starts_at_once(policy: WaitPolicy, waits: bool,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    engine = ScriptedEngine()
    max_wait = 0.4
    chosen: list[float] = []  # the strategy's waits for more requests

    async def scenario() -> float:
        strategy = RequestLevel(engine, max_wait_s=max_wait, wait_policy=policy)
        wait_s = strategy._wait_s

        def recorded() -> float:
            chosen.append(wait_s())
            return chosen[-1]

        monkeypatch.setattr(strategy, "_wait_s", recorded)
        for i in range(16):
            strategy.arrivals.record(i * 1.0)  # one request a second until now
        batcher = Batcher(strategy)
        batcher.start()
        started_at = time.perf_counter()
        assert [r.text for r in await batcher.submit(["x"], GREEDY, timeout=5)] == ["X"]
        elapsed = time.perf_counter() - started_at
        await batcher.close(1)
        return elapsed

    elapsed = run(scenario)
    assert chosen[:1] == [max_wait if waits else 0.0]
    if waits:  # a lower bound only: a busy machine can make any call slow
        assert elapsed >= max_wait, elapsed


def test_group_by_options_keeps_first_appearance_order() -> None:
    loop = asyncio.new_event_loop()
    try:
        requests = [Request([str(i)], opts, loop.create_future())
                    for i, opts in enumerate([GREEDY, BEAM, GREEDY])]
        groups = group_by_options(requests)
    finally:
        loop.close()
    assert [[r.texts[0] for r in group] for group in groups] == [["0", "2"], ["1"]]


def test_deadline_raises_and_queued_work_is_dropped() -> None:
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)

    async def scenario() -> None:
        batcher = started(engine, max_wait_s=0)
        first = asyncio.ensure_future(batcher.submit(["slow"], GREEDY, timeout=5))
        await engine.until_entered()  # the engine now holds "slow"
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(["late"], GREEDY, timeout=0.05)
        assert batcher.depth == 0  # dropped from the queue, not only forgotten by its caller
        gate.set()
        assert [r.text for r in await first] == ["SLOW"]
        await batcher.close(1)

    run(scenario)
    assert [texts for texts, _ in engine.calls] == [["slow"]]  # "late" never reached it


async def cancelled(task: asyncio.Future[T]) -> None:
    """Cancel ``task`` (what a disconnected client's request task gets) and wait until it has
    ended: its request's future is cancelled and the batcher told to drop it."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_cancelled_caller_is_dropped_before_it_starts() -> None:
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)

    async def scenario() -> None:
        batcher = started(engine, max_wait_s=0)
        first = asyncio.ensure_future(batcher.submit(["busy"], GREEDY, timeout=5))
        await engine.until_entered()
        gone = asyncio.ensure_future(batcher.submit(["gone"], GREEDY, timeout=5))
        await asyncio.sleep(0)  # the task runs up to its first wait: "gone" is queued
        assert batcher.depth == 1
        await cancelled(gone)
        kept = asyncio.ensure_future(batcher.submit(["kept"], GREEDY, timeout=5))
        gate.set()
        await first
        assert [r.text for r in await kept] == ["KEPT"]
        await batcher.close(1)

    run(scenario)
    assert ["gone"] not in [texts for texts, _ in engine.calls]


def test_full_queue_rejects_at_once() -> None:
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)

    async def scenario() -> None:
        batcher = started(engine, max_wait_s=0, queue_size=2)
        running = asyncio.ensure_future(batcher.submit(["run"], GREEDY, timeout=5))
        await engine.until_entered()
        queued = [asyncio.ensure_future(batcher.submit([t], GREEDY, timeout=5)) for t in "ab"]
        await asyncio.sleep(0)  # both tasks run up to their first wait: queued
        with pytest.raises(QueueFullError) as caught:
            await batcher.submit(["c"], GREEDY, timeout=5)
        assert caught.value.capacity == 2 and batcher.depth == 2
        gate.set()
        await asyncio.gather(running, *queued)
        await batcher.close(1)

    run(scenario)


def test_engine_failure_reaches_every_caller_of_the_batch() -> None:
    engine = ScriptedEngine(fail=True)

    async def scenario() -> None:
        batcher = started(engine, max_wait_s=0.05)
        results = await asyncio.gather(batcher.submit(["a"], GREEDY, timeout=5),
                                       batcher.submit(["b"], GREEDY, timeout=5),
                                       return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        assert [r.text for r in await _ok(batcher, engine)] == ["C"]
        await batcher.close(1)

    run(scenario)


async def _ok(batcher: Batcher, engine: ScriptedEngine) -> list[Translation]:
    engine.fail = False  # the loop survives a failed batch
    return await batcher.submit(["c"], GREEDY, timeout=5)


def test_close_finishes_queued_work_then_refuses() -> None:
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)

    async def scenario() -> None:
        batcher = started(engine, max_wait_s=0, max_batch_tokens=1)
        jobs = [asyncio.ensure_future(batcher.submit([t], GREEDY, timeout=5)) for t in "abc"]
        await engine.until_entered()  # "a" runs, "b" and "c" are queued
        closing = asyncio.ensure_future(batcher.close(5))
        await asyncio.sleep(0)  # close has begun: no more work is taken
        with pytest.raises(BatcherClosedError):
            await batcher.submit(["d"], GREEDY, timeout=5)
        gate.set()
        await closing
        assert [r[0].text for r in await asyncio.gather(*jobs)] == ["A", "B", "C"]
        assert not batcher.aborted  # drained, not timed out

    run(scenario)
    assert [texts for texts, _ in engine.calls] == [["a"], ["b"], ["c"]]


def test_close_timeout_fails_what_is_left() -> None:
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)

    async def scenario() -> None:
        batcher = started(engine, max_wait_s=0)
        running = asyncio.ensure_future(batcher.submit(["run"], GREEDY, timeout=5))
        await engine.until_entered()
        queued = asyncio.ensure_future(batcher.submit(["q"], GREEDY, timeout=5))
        await asyncio.sleep(0)  # "q" is queued
        await batcher.close(0.05)  # the engine still holds "run"
        assert batcher.aborted
        for job in (running, queued):
            with pytest.raises(BatcherClosedError):
                await job
        gate.set()

    run(scenario)
    assert [texts for texts, _ in engine.calls] == [["run"]]
