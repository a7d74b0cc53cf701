"""The queueing model of the two batching modes (bench/queueing.py): hand-computed timelines,
the budget, the capacity each cost profile allows, and the calibrated CLI on the fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.protocol import poisson
from bench.queueing import Costs, Job, Setup, Worker, closed_loop, main, serve
from tests.conftest import read_jsonl, write_test_split

UNIT_STEPS = Setup(Costs(call_ms=1.0, sentence_ms=0.0))


@pytest.mark.parametrize("mode", ["request", "continuous"])
def test_a_sentence_alone_costs_its_encoder_and_steps(mode: str) -> None:
    costs = Costs(call_ms=1.0, sentence_ms=0.5, encode_call_ms=2.0, encode_token_ms=0.1)
    latencies = serve(mode, Setup(costs), [(3.0, Job(steps=10, source_tokens=20))])
    assert latencies == [pytest.approx(2.0 + 0.1 * 20 + 10 * (1.0 + 0.5))]


def test_a_short_request_waits_for_the_batch_only_in_request_level_mode() -> None:
    """A (10 steps) arrives at 0 ms, B (2 steps) at 0.5 ms; each step costs 1 ms."""
    arrivals = [(0.0, Job(10, 5)), (0.5, Job(2, 5))]
    # request-level: B is batched after A's 10 steps, then takes 2
    assert serve("request", UNIT_STEPS, arrivals) == [10.0, pytest.approx(11.5)]
    # continuous: B is admitted at the second iteration (1 ms) and leaves after its 2 steps
    before = Setup(UNIT_STEPS.costs, overlap=False)
    assert serve("continuous", before, arrivals) == [pytest.approx(2.5), 10.0]
    # ... or is encoded during the second step and joins after it: one step later
    assert serve("continuous", UNIT_STEPS, arrivals) == [pytest.approx(3.5), 10.0]


def test_an_overlapped_encoder_costs_only_what_exceeds_the_step() -> None:
    """A runs (3 steps of 2 ms); B arrives at 1 ms and its encoder call takes 5 ms."""
    costs = Costs(call_ms=2.0, sentence_ms=0.0, encode_call_ms=5.0, encode_token_ms=0.0)
    arrivals = [(0.0, Job(3, 5)), (1.0, Job(1, 5))]
    # A: encoded alone (5) + a step (2) = 7; then B's encoding (5) hides A's step (2)
    # ending at 12; A's last step ends at 14, when B's only step also ends (B joined at 12)
    assert serve("continuous", Setup(costs), arrivals) == [14.0, pytest.approx(13.0)]
    # without overlap the encoder adds to the step: A 7 + (5 + 2) + 2 = 16, B done at 14
    assert serve("continuous", Setup(costs, overlap=False), arrivals) == [
        pytest.approx(13.0), 16.0]


@pytest.mark.parametrize("mode", ["request", "continuous"])
def test_running_sentences_stay_within_the_budget(mode: str) -> None:
    setup = Setup(Costs(1.0, 0.0), budget=4096, beam=4)
    worker = Worker(mode, setup)
    worker.waiting.extend((0.0, Job(5, 400)) for _ in range(5))  # 1,600 budget tokens each
    while worker.busy():
        worker.iterate()
        assert setup.beam * sum(s.source_tokens for s in worker.running) <= setup.budget
    assert worker.clock == 15.0  # 2 + 2 + 1 sentences, 5 steps each


def test_a_sentence_over_the_budget_runs_alone() -> None:
    worker = Worker("continuous", Setup(Costs(1.0, 0.0), budget=100, beam=4))
    worker.waiting.extend([(0.0, Job(3, 50)), (0.0, Job(3, 10))])
    worker.iterate()
    assert [s.source_tokens for s in worker.running] == [50]


def test_where_a_step_costs_per_row_continuous_batching_adds_no_capacity() -> None:
    jobs = [Job(steps, 30) for steps in range(10, 60, 5)]
    cpu = Setup(Costs(call_ms=0.0, sentence_ms=0.3))
    request, continuous = (closed_loop(mode, cpu, jobs, 64, 60) for mode in
                           ("request", "continuous"))
    assert continuous == pytest.approx(request, rel=0.03)
    flat = Setup(Costs(call_ms=10.0, sentence_ms=0.01))  # a step costs the same for any batch
    request, continuous = (closed_loop(mode, flat, jobs, 64, 60) for mode in
                           ("request", "continuous"))
    assert continuous > 1.5 * request


def test_poisson_arrivals_keep_the_rate() -> None:
    arrivals = poisson([Job(1, 1)], rate=50, seconds=100, seed=3)
    assert len(arrivals) == pytest.approx(5000, rel=0.05)
    assert [t for t, _ in arrivals] == sorted(t for t, _ in arrivals)
    assert arrivals[-1][0] < 100  # seconds


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        Worker("lanes", UNIT_STEPS)


def test_the_calibrated_model_reports_both_modes(trained_bundle: Path, tmp_path: Path) -> None:
    data = write_test_split(tmp_path / "test.jsonl", 40, seed=5)
    out = tmp_path / "queueing.jsonl"
    assert main(["--bundle", str(trained_bundle), "--data", str(data), "--sentences", "40",
                 "--beam", "2", "--seconds", "5", "--out", str(out)]) == 0
    rows = read_jsonl(out)
    summary = rows[-1]
    assert summary["kind"] == "summary" and summary["beam"] == 2
    assert summary["costs"]["sentence_ms"] > 0 and summary["costs"]["encode_token_ms"] > 0
    loads = [r for r in rows if r["kind"] == "open_loop"]
    assert [(r["load"], r["mode"]) for r in loads] == [
        (load, mode) for load in (0.5, 0.7, 0.9) for mode in ("request", "continuous")]
    assert all(0 < r["p50_ms"] <= r["p99_ms"] for r in loads)
    capacity = {r["mode"]: r["sentences_per_s"] for r in rows if r["kind"] == "saturated"}
    assert summary["saturated_continuous_over_request"] == pytest.approx(
        capacity["continuous"] / capacity["request"], abs=0.002)


def test_given_costs_replace_the_measured_ones(trained_bundle: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = write_test_split(tmp_path / "test.jsonl", 20, seed=6)
    assert main(["--bundle", str(trained_bundle), "--data", str(data), "--sentences", "20",
                 "--seconds", "2", "--loads", "0.5", "--costs", "10,0.01"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert '"call_ms": 10.0, "sentence_ms": 0.01, "encode_call_ms": 0.0' in summary


def test_missing_data_names_the_fix(trained_bundle: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bundle", str(trained_bundle), "--data", str(tmp_path / "none.jsonl")]) == 2
    assert "make data" in capsys.readouterr().err
