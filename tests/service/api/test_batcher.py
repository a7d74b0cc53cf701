"""The batcher with a scripted engine: merging, ordering, grouping, deadlines, full queue."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from service.api.batcher import (
    ArrivalGaps,
    Batcher,
    BatcherClosedError,
    BatchReport,
    DeadlineExceededError,
    DecodeOptions,
    QueueFullError,
    _Work,
    group_by_options,
)
from service.inference.translator import Translation

T = TypeVar("T")
GREEDY = DecodeOptions(beam_size=1)
BEAM = DecodeOptions(beam_size=4)


@dataclass
class ScriptedEngine:
    """Upper-cases texts; records calls; optionally blocks until released or fails."""

    delay: float = 0.0
    gate: threading.Event | None = None
    fail: bool = False
    calls: list[tuple[list[str], DecodeOptions]] = field(default_factory=list)

    def translate(self, texts: list[str], options: DecodeOptions) -> list[Translation]:
        self.calls.append((list(texts), options))
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


def run(make: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(make(), 20))


def test_concurrent_requests_share_engine_calls_and_keep_their_results() -> None:
    engine = ScriptedEngine(delay=0.02)
    reports: list[BatchReport] = []

    async def scenario() -> list[list[Translation]]:
        batcher = Batcher(engine, max_wait_s=0.05, on_batch=reports.append)
        batcher.start()
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
        batcher = Batcher(engine, max_wait_s=0.05)
        batcher.start()
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
        batcher = Batcher(engine, max_batch_tokens=10, max_wait_s=0.05,
                          cost=lambda texts: 4 * len(texts))
        batcher.start()
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
def test_lone_request_after_sparse_arrivals_starts_at_once(policy: str, waits: bool,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    engine = ScriptedEngine()
    max_wait = 0.4
    chosen: list[float] = []  # the batcher's waits for more requests

    async def scenario() -> float:
        batcher = Batcher(engine, max_wait_s=max_wait, wait_policy=policy)  # type: ignore[arg-type]
        wait_s = batcher._wait_s

        def recorded() -> float:
            chosen.append(wait_s())
            return chosen[-1]

        monkeypatch.setattr(batcher, "_wait_s", recorded)
        for i in range(16):
            batcher.arrivals.record(i * 1.0)  # one request a second until now
        batcher.start()
        started = time.perf_counter()
        assert [r.text for r in await batcher.submit(["x"], GREEDY, timeout=5)] == ["X"]
        elapsed = time.perf_counter() - started
        await batcher.close(1)
        return elapsed

    elapsed = run(scenario)
    assert chosen[:1] == [max_wait if waits else 0.0]
    if waits:  # a lower bound only: a busy machine can make any call slow
        assert elapsed >= max_wait, elapsed


def test_group_by_options_keeps_first_appearance_order() -> None:
    loop = asyncio.new_event_loop()
    try:
        works = [_Work([str(i)], opts, loop.create_future(), 1)
                 for i, opts in enumerate([GREEDY, BEAM, GREEDY])]
        groups = group_by_options(works)
    finally:
        loop.close()
    assert [[w.texts[0] for w in group] for group in groups] == [["0", "2"], ["1"]]


def test_deadline_raises_and_queued_work_is_dropped() -> None:
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)

    async def scenario() -> None:
        batcher = Batcher(engine, max_wait_s=0)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(["slow"], GREEDY, timeout=5))
        await asyncio.sleep(0.05)  # the engine now holds "slow"
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(["late"], GREEDY, timeout=0.05)
        gate.set()
        assert [r.text for r in await first] == ["SLOW"]
        await batcher.close(1)

    run(scenario)
    assert [texts for texts, _ in engine.calls] == [["slow"]]  # "late" never reached it


def test_cancelled_caller_is_dropped_before_it_starts() -> None:
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)

    async def scenario() -> None:
        batcher = Batcher(engine, max_wait_s=0)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(["busy"], GREEDY, timeout=5))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(batcher.submit(["gone"], GREEDY, timeout=5))
        await asyncio.sleep(0.01)
        gone.cancel()  # what a disconnected client's request task gets
        kept = asyncio.ensure_future(batcher.submit(["kept"], GREEDY, timeout=5))
        await asyncio.sleep(0.01)
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
        batcher = Batcher(engine, max_wait_s=0, queue_size=2)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(["run"], GREEDY, timeout=5))
        await asyncio.sleep(0.05)
        queued = [asyncio.ensure_future(batcher.submit([t], GREEDY, timeout=5)) for t in "ab"]
        await asyncio.sleep(0.01)
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
        batcher = Batcher(engine, max_wait_s=0.05)
        batcher.start()
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
    engine = ScriptedEngine(delay=0.01)

    async def scenario() -> None:
        batcher = Batcher(engine, max_wait_s=0, max_batch_tokens=1)
        batcher.start()
        jobs = [asyncio.ensure_future(batcher.submit([t], GREEDY, timeout=5)) for t in "abc"]
        await asyncio.sleep(0)
        await batcher.close(5)
        assert [r[0].text for r in await asyncio.gather(*jobs)] == ["A", "B", "C"]
        with pytest.raises(BatcherClosedError):
            await batcher.submit(["d"], GREEDY, timeout=5)

    run(scenario)


def test_close_timeout_fails_what_is_left() -> None:
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)

    async def scenario() -> None:
        batcher = Batcher(engine, max_wait_s=0)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(["run"], GREEDY, timeout=5))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(batcher.submit(["q"], GREEDY, timeout=5))
        await asyncio.sleep(0)
        await batcher.close(0.05)
        gate.set()
        for job in (running, queued):
            with pytest.raises(BatcherClosedError):
                await job

    run(scenario)
