"""The batcher with iteration-level scheduling over the real tiny bundle: own results, early
answers, deadlines, queue bound, cancellation, drain, and the ``batching`` setting."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from inference import Translator
from service.api.batcher import (
    Batcher,
    DeadlineExceededError,
    DecodeOptions,
    QueueFullError,
)
from service.api.engine import Admission, Outcome, TranslatorEngine, TranslatorLoop
from service.api.iteration_level import IterationLevel
from service.api.registry import ModelRegistry
from service.api.request_level import RequestLevel
from service.api.settings import Settings
from tests.conftest import synthetic_pairs
from tests.service.api.fakes import copy_bundle

TEXTS = [src for src, _ in synthetic_pairs(10, seed=21)]
GREEDY = DecodeOptions(beam_size=1)
BEAM = DecodeOptions(beam_size=4, num_hypotheses=2)


@pytest.fixture(scope="module")
def translator(trained_bundle: Path) -> Translator:
    return Translator.load(trained_bundle, threads=1)


def alone(translator: Translator, texts: list[str], options: DecodeOptions) -> list[str]:
    return [t.text for t in translator.translate(
        texts, beam_size=options.beam_size, num_hypotheses=options.num_hypotheses,
        length_penalty=options.length_penalty, max_length=options.max_length)]


async def started(translator: Translator, *, queue_size: int = 256,
                  max_batch_tokens: int = 4096, overlap_encoder: bool = True) -> Batcher:
    engine = TranslatorEngine(translator)
    loop = engine.decode_loop()
    assert loop is not None
    batcher = Batcher(IterationLevel(engine, loop, max_batch_tokens=max_batch_tokens,
                                     overlap_encoder=overlap_encoder), queue_size=queue_size)
    batcher.start()
    return batcher


def running_loop(batcher: Batcher) -> TranslatorLoop:
    """The decode loop an iteration-level batcher drives."""
    assert isinstance(batcher.strategy, IterationLevel)
    assert isinstance(batcher.strategy.loop, TranslatorLoop)
    return batcher.strategy.loop


@dataclass
class StepGate:
    """``held`` is set once the worker waits after a decoder step; it waits until ``release``
    is set (at most 30 s)."""

    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def until_held(self) -> None:
        """Wait (at most 30 s) until the worker holds."""
        assert await asyncio.to_thread(self.held.wait, 30), "the worker never took a step"


def hold_after_first_step(batcher: Batcher, monkeypatch: pytest.MonkeyPatch) -> StepGate:
    """Stop the worker after each decoder step while something runs, until the gate is
    released: what the test does meanwhile cannot race the decoder (nor read its state while
    the worker changes it)."""
    gate = StepGate()
    loop = running_loop(batcher)
    step_and_admit = loop.step_and_admit

    def held(admissions: list[Admission], encoder: Executor) -> list[Outcome]:
        outcomes = step_and_admit(admissions, encoder)
        if loop.running:
            gate.held.set()
            gate.release.wait(30)
        return outcomes

    monkeypatch.setattr(loop, "step_and_admit", held)
    return gate


@pytest.mark.parametrize("overlap_encoder", [True, False])
def test_concurrent_requests_get_their_own_results(translator: Translator,
                                                   overlap_encoder: bool) -> None:
    requests = [(TEXTS[0:2], GREEDY), (TEXTS[2:3], BEAM), (TEXTS[3:6], BEAM),
                (TEXTS[6:7], DecodeOptions(beam_size=2, max_length=3)), (TEXTS[7:10], GREEDY)]

    async def run() -> list[list[str]]:
        batcher = await started(translator, overlap_encoder=overlap_encoder)
        results = await asyncio.gather(*(batcher.submit(texts, options, timeout=60)
                                         for texts, options in requests))
        await batcher.close(5)
        return [[t.text for t in result] for result in results]

    got = asyncio.run(run())
    assert got == [alone(translator, texts, options) for texts, options in requests]


def test_a_short_request_does_not_wait_for_a_long_one(translator: Translator,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    long_text = " ".join(TEXTS)  # one long sentence: many decoder steps

    async def run() -> tuple[list[str], int]:
        batcher = await started(translator)
        gate = hold_after_first_step(batcher, monkeypatch)
        order: list[str] = []
        tokens: dict[str, int] = {}

        async def timed(name: str, texts: list[str], options: DecodeOptions) -> None:
            result = await batcher.submit(texts, options, timeout=60)
            order.append(name)
            tokens[name] = result[0].target_tokens

        long_task = asyncio.create_task(timed("long", [long_text], DecodeOptions(
            beam_size=4, max_length=80)))
        await gate.until_held()  # the long request took its first step and waits
        short_task = asyncio.create_task(timed("short", [TEXTS[0]], DecodeOptions(
            beam_size=1, max_length=3)))
        await asyncio.sleep(0)  # the short request is queued
        assert batcher.depth == 1
        gate.release.set()  # from here the order depends on steps only: 3 against 20 or more
        await short_task
        await long_task
        await batcher.close(5)
        return order, tokens["long"]

    order, long_tokens = asyncio.run(run())
    assert long_tokens > 20  # it really was long
    assert order == ["short", "long"]


def test_deadline_frees_the_rows(translator: Translator) -> None:
    async def run() -> int:
        batcher = await started(translator)
        with pytest.raises(DeadlineExceededError):
            await batcher.submit([" ".join(TEXTS)], DecodeOptions(beam_size=4, max_length=200),
                                 timeout=0.001)
        await batcher.submit([TEXTS[0]], GREEDY, timeout=60)  # the loop iterates again
        running = running_loop(batcher).running
        await batcher.close(5)
        return running

    assert asyncio.run(run()) == 0


def test_full_queue_is_refused_at_once(translator: Translator,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        batcher = await started(translator, queue_size=2, max_batch_tokens=1)
        gate = hold_after_first_step(batcher, monkeypatch)
        # budget 1: the long request decodes alone, the next two wait (the queue), more are
        # refused at once
        long = DecodeOptions(beam_size=4, max_length=200)
        tasks = [asyncio.create_task(batcher.submit([" ".join(TEXTS)], long, timeout=60))]
        await gate.until_held()  # the long request was admitted, took a step and waits
        tasks += [asyncio.create_task(batcher.submit([t], BEAM, timeout=60)) for t in TEXTS[:2]]
        await asyncio.sleep(0)
        assert batcher.depth == 2
        with pytest.raises(QueueFullError):
            await batcher.submit([TEXTS[3]], GREEDY, timeout=60)
        with pytest.raises(QueueFullError):
            batcher.submit_each(TEXTS[3:5], GREEDY, timeout=60)
        gate.release.set()
        assert len(await asyncio.gather(*tasks)) == 3  # the queued ones still complete
        await batcher.close(5)

    asyncio.run(run())


def test_submit_each_answers_every_text(translator: Translator) -> None:
    async def run() -> list[str]:
        batcher = await started(translator)
        futures = batcher.submit_each(TEXTS[:4], BEAM, timeout=60)
        results = [(await future).text for future in futures]
        await batcher.close(5)
        return results

    assert asyncio.run(run()) == alone(translator, TEXTS[:4], BEAM)


def test_close_finishes_running_requests(translator: Translator) -> None:
    async def run() -> int:
        batcher = await started(translator)
        tasks = [asyncio.create_task(batcher.submit([t], BEAM, timeout=60)) for t in TEXTS[:5]]
        await asyncio.sleep(0)  # the tasks run up to their first wait: all five are queued
        assert batcher.depth == 5
        await batcher.close(30)
        assert not batcher.aborted  # drained, not timed out
        return sum(len(result) for result in [await task for task in tasks])

    assert asyncio.run(run()) == 5


@pytest.mark.parametrize(("batching", "kind"), [("continuous", IterationLevel),
                                                ("request", RequestLevel)])
def test_setting_chooses_the_strategy(trained_bundle: Path, tmp_path: Path,
                                      batching: Literal["request", "continuous"],
                                      kind: type) -> None:
    copy_bundle(trained_bundle, tmp_path, "tiny")
    settings = Settings(models_dir=tmp_path, threads=1, batching=batching)
    assert isinstance(chosen_batcher(settings).strategy, kind)


def test_the_service_overlaps_the_encoder(trained_bundle: Path, tmp_path: Path) -> None:
    copy_bundle(trained_bundle, tmp_path, "tiny")
    strategy = chosen_batcher(Settings(models_dir=tmp_path, threads=1)).strategy
    assert isinstance(strategy, IterationLevel) and strategy.overlap_encoder


def test_a_loop_on_the_device_answers_each_request_as_alone(trained_bundle: Path) -> None:
    bound = Translator.load(trained_bundle, threads=1, io_binding=True)
    requests = [(TEXTS[0:2], GREEDY), (TEXTS[2:3], BEAM), (TEXTS[3:6], BEAM)]

    async def run() -> list[list[str]]:
        batcher = await started(bound)
        results = await asyncio.gather(*(batcher.submit(texts, options, timeout=60)
                                         for texts, options in requests))
        await batcher.close(5)
        return [[t.text for t in result] for result in results]

    assert asyncio.run(run()) == [alone(bound, texts, options) for texts, options in requests]


def chosen_batcher(settings: Settings) -> Batcher:
    """The batcher a registry with these settings gives the model "tiny"."""
    async def run() -> Batcher:
        registry = ModelRegistry(settings)
        registry.discover()
        await registry.load_all()
        batcher = registry.entries["tiny"].batcher
        assert batcher is not None
        await registry.close(5)
        return batcher

    return asyncio.run(run())
