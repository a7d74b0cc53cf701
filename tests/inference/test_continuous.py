"""Continuous batching: requests joining a running decode loop at different steps get what
they get alone (same tokens; scores equal up to float summation order)."""

from __future__ import annotations

from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from inference import Translator
from inference.continuous import Arrival, DecodeLoop
from inference.memory import OrtMemory
from inference.onnx_decoder import OnnxModel
from inference.options import DecodeOptions
from inference.translator import Translation
from tests.conftest import synthetic_pairs

TEXTS = [src for src, _ in synthetic_pairs(16, seed=11)]
GREEDY = DecodeOptions(beam_size=1)
BEAM = DecodeOptions(beam_size=4, num_hypotheses=2)


@dataclass
class Planned:
    step: int
    texts: list[str]
    options: DecodeOptions
    max_length: int | None = None


PLAN = [Planned(0, TEXTS[0:3], GREEDY), Planned(0, TEXTS[3:5], BEAM),
        Planned(1, TEXTS[5:6], GREEDY, max_length=4), Planned(2, TEXTS[6:8], BEAM),
        Planned(3, [" ".join(TEXTS[8:11])], GREEDY), Planned(4, TEXTS[11:12], BEAM),
        Planned(6, TEXTS[12:14], DecodeOptions(beam_size=4, length_penalty=0.6))]
CANCELLED = Planned(1, TEXTS[14:16], GREEDY)


@pytest.fixture(scope="module", params=["trained_bundle", "lstm_bundle",
                                        "trained_bundle+io_binding", "lstm_bundle+io_binding"])
def translator(request: pytest.FixtureRequest) -> Translator:
    """Each architecture; ``+io_binding``: the loop keeps its state in ONNX Runtime values
    (``OrtMemory``; CPU values here, on the GPU with CUDA)."""
    fixture, _, binding = request.param.partition("+")
    loaded = Translator.load(request.getfixturevalue(fixture), io_binding=bool(binding))
    assert isinstance(loaded.model.memory, OrtMemory) == bool(binding)
    return loaded


def alone(translator: Translator, arrival: Planned) -> list[Translation]:
    return translator.translate(arrival.texts,
                                replace(arrival.options, max_length=arrival.max_length))


def run_plan(loop: DecodeLoop, plan: list[Planned], cancel: tuple[int, int] | None = None,
             encoder: Executor | None = None) -> tuple[dict[int, list[Translation]], int]:
    """Drive the loop step by step, admitting before each step (with ``encoder``: during it,
    ``DecodeLoop.step_and_admit``); results by plan index and the widest spread of steps seen
    inside one running search (0 would mean nobody ever joined a running batch)."""
    results: dict[int, list[Translation]] = {}
    spread, step = 0, 0
    while step < 200:
        arrivals = [Arrival(key, a.texts, replace(a.options, max_length=a.max_length))
                    for key, a in enumerate(plan) if a.step == step]
        if cancel is not None and cancel[1] == step:
            loop.cancel(cancel[0])
        if encoder is None:
            assert loop.admit(arrivals) == []  # nothing answered before decoding
            outcomes = loop.step()
        else:
            outcomes = loop.step_and_admit(arrivals, encoder)
        for search in loop.searches.values():
            if search.beams is not None:
                spread = max(spread, int(np.ptp(search.beams.steps)))
        for key, outcome in outcomes:
            assert not isinstance(outcome, Exception)
            results[key] = outcome
        step += 1
        if step > max(a.step for a in plan) and not loop.running:
            break
    return results, spread


def assert_same(got: Translation, want: Translation) -> None:
    assert (got.text, got.finish_reason, got.target_tokens) == (
        want.text, want.finish_reason, want.target_tokens)
    assert got.score == pytest.approx(want.score, rel=1e-5, abs=1e-5)
    assert [a.text for a in got.alternatives] == [a.text for a in want.alternatives]
    assert [a.score for a in got.alternatives] == pytest.approx(
        [a.score for a in want.alternatives], rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("overlap", [False, True], ids=["admit-then-step", "encode-during-step"])
def test_joining_requests_get_their_alone_results(translator: Translator, overlap: bool) -> None:
    plan = [*PLAN, CANCELLED]
    with ThreadPoolExecutor(1) as encoder:
        results, spread = run_plan(DecodeLoop(translator), plan, cancel=(len(plan) - 1, 3),
                                   encoder=encoder if overlap else None)
    assert spread > 0, "no request joined a batch already running"
    assert sorted(results) == list(range(len(PLAN)))  # the cancelled one never answers
    for key, arrival in enumerate(PLAN):
        for got, want in zip(results[key], alone(translator, arrival), strict=True):
            assert_same(got, want)


def test_encoding_changes_nothing_until_the_join(translator: Translator) -> None:
    loop = DecodeLoop(translator)
    assert loop.admit([Arrival(0, TEXTS[:2], BEAM)]) == []
    loop.step()
    model = loop.translator.model
    before = (loop.running, dict(loop.requests), dict(loop.owner_of_job), model.steps)
    encoded = loop.encode([Arrival(1, TEXTS[2:5], GREEDY), Arrival(2, TEXTS[5:6], BEAM),
                           Arrival(3, [], GREEDY)])
    assert (loop.running, loop.requests, loop.owner_of_job, model.steps) == before
    assert set(loop.searches) == {BEAM}
    answered = loop.join(encoded)  # no text: answered without decoding
    assert [key for key, _ in answered] == [3]
    assert loop.running == 2 + 3 + 1
    assert set(loop.requests) == {0, 1, 2} and set(loop.searches) == {BEAM, GREEDY}


def test_a_step_with_arrivals_and_nothing_running_decodes_them(translator: Translator) -> None:
    loop = DecodeLoop(translator)
    with ThreadPoolExecutor(1) as encoder:
        loop.step_and_admit([Arrival(0, TEXTS[:2], GREEDY)], encoder)
    search = loop.searches[GREEDY]
    assert search.beams is not None and (search.beams.steps == 1).all()  # they took the step


def test_cancel_frees_rows_and_the_loop_drains(translator: Translator) -> None:
    loop = DecodeLoop(translator)
    assert loop.admit([Arrival(0, TEXTS[:4], BEAM), Arrival(1, TEXTS[4:6], BEAM)]) == []
    loop.step()
    before = loop.running
    search = next(iter(loop.searches.values()))
    # an input's beams share one row of encoder outputs (Transformers), else have one each
    per_input = 1 if translator.manifest.decoder.grouped_static else BEAM.beam_size
    assert search.state is not None
    assert len(search.state.mask) == before * per_input == 6 * per_input
    loop.cancel(0)
    assert loop.running == before - 4
    assert len(search.state.mask) == 2 * per_input
    while loop.running:
        outcomes = loop.step()
        assert all(key == 1 for key, _ in outcomes)
    assert not loop.searches and not loop.requests


def test_joining_rows_start_at_column_zero_with_their_own_position(trained_bundle: Path
                                                                   ) -> None:
    model = Translator.load(trained_bundle).model
    running = model.encode(np.array([[5, 6, 7, 8, 1]]), np.ones((1, 5), dtype=np.int64))
    _, running = model.step(np.array([3]), running)
    _, running = model.step(np.array([9]), running)
    written = running.carried["past_key_0"][0, :, :2].copy()
    assert written.any()  # the two entries were written
    joining = model.encode(np.array([[5, 1]]), np.ones((1, 2), dtype=np.int64))
    joined = model.join(running, joining)
    assert joined.cache_mask is not None
    capacity = joined.cache_mask.shape[1]
    assert joined.cache_mask.tolist() == [[1, 1] + [0] * (capacity - 2), [0] * capacity]
    assert joined.carried["position"].tolist() == [2, 0]
    np.testing.assert_array_equal(joined.carried["past_key_0"][0, :, :2], written)
    assert joined.mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]


def test_bundles_without_cache_mask_are_refused(trained_bundle: Path, lstm_bundle: Path
                                                ) -> None:
    translator = Translator.load(trained_bundle)
    old = replace(translator.manifest,
                  decoder=replace(translator.manifest.decoder, cache_mask=None))
    assert not old.decoder.joinable  # a growing cache without a mask cannot be padded
    model = OnnxModel(old, translator.model.encoder, translator.model.decoder)
    with pytest.raises(ValueError, match=r"training\.export"):
        DecodeLoop(Translator(old, model, translator.tokenizer, translator.provider))
    assert Translator.load(lstm_bundle).manifest.decoder.joinable  # no growing state at all
