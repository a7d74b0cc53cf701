"""The in-process batching comparison runs both of the service's batchers end to end (quick
sizes; figures: ``python -m bench.in_process``, docs/performance.md), with the service's
defaults, and without the web stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.in_process import batchers, main, parser
from inference import Translator
from service.api.batcher import Batcher
from service.api.engine import TranslatorEngine
from service.api.iteration_level import IterationLevel
from service.api.request_level import RequestLevel
from service.api.settings import Settings
from tests.conftest import REPO, read_jsonl, write_test_split


@pytest.mark.parametrize(("fixture", "flags"), [("trained_bundle", []),
                                               ("trained_bundle", ["--io-binding"])])
def test_both_batchers_measured_in_turns(fixture: str, flags: list[str], tmp_path: Path,
                                         request: pytest.FixtureRequest) -> None:
    bundle: Path = request.getfixturevalue(fixture)
    data = write_test_split(tmp_path / "test.jsonl", 30, seed=6)
    out = tmp_path / "rows.jsonl"
    assert main(["--bundle", str(bundle), "--data", str(data), "--seconds", "0.6",
                 "--warmup", "0.3", "--rounds", "2", "--load-rounds", "2", "--loads", "0.5",
                 "--clients", "4", "--beam", "2", "--threads", "1", "--out", str(out),
                 "--png", str(tmp_path / "chart.png"), *flags]) == 0
    rows = read_jsonl(out)
    saturated = [r for r in rows if r.get("kind") == "saturated"]
    assert [r["mode"] for r in saturated] == ["request", "continuous", "continuous", "request"]
    assert all(r["sentences_per_s"] > 0 and r["errors"] == 0 for r in saturated)
    open_loop = [r for r in rows if r.get("kind") == "open_loop"]
    assert [(r["round"], r["mode"]) for r in open_loop] == [
        (0, "request"), (0, "continuous"), (1, "continuous"), (1, "request")]
    assert all(r["errors"] == 0 and r["p50_ms"] > 0 for r in open_loop)
    for mode in ("request", "continuous"):
        stream = next(r for r in rows if r.get("kind") == "stream" and r["mode"] == mode)
        assert 0 < stream["stream_first_sentence_ms"] <= stream["stream_done_ms"]
        assert stream["translate_list_ms"] > 0
    summary = rows[-1]
    assert summary["kind"] == "summary" and len(summary["saturated_round_ratios"]) == 2
    assert summary["p50_ratio_at_50pct"] > 0
    assert (tmp_path / "chart.png").stat().st_size > 0


def test_budgets_reach_the_batchers_and_the_translator(trained_bundle: Path) -> None:
    args = parser().parse_args(["--max-batch-tokens", "2048", "--continuous-budget", "8192"])
    modes = batchers(Translator.load(trained_bundle, threads=1, max_batch_tokens=2048), args)
    assert strategy(modes["request"]).max_batch_tokens == 2048
    assert strategy(modes["continuous"]).max_batch_tokens == 8192
    args = parser().parse_args(["--max-batch-tokens", "2048"])
    assert strategy(batchers(Translator.load(trained_bundle, threads=1), args)[
        "continuous"]).max_batch_tokens == 2048


def strategy(batcher: Batcher) -> RequestLevel | IterationLevel:
    assert isinstance(batcher.strategy, RequestLevel | IterationLevel)
    return batcher.strategy


def test_defaults_are_the_services(trained_bundle: Path) -> None:
    """The bench's defaults are the settings' and the strategies' defaults."""
    args, settings = parser().parse_args([]), Settings()
    assert (args.max_batch_tokens, args.max_wait_ms, args.queue_size) == (
        settings.max_batch_tokens, settings.max_wait_ms, settings.queue_size)
    engine = TranslatorEngine(Translator.load(trained_bundle, threads=1))
    loop = engine.decode_loop()
    assert loop is not None
    assert args.wait_policy == RequestLevel(engine).wait_policy
    continuous = IterationLevel(engine, loop)
    continuous.close()
    assert (not args.no_overlap) == continuous.overlap_encoder


def test_runs_without_the_web_stack() -> None:
    """The GPU machine has ONNX Runtime and numpy, not FastAPI or pydantic."""
    code = ("import sys, bench.in_process; heavy = {'fastapi', 'pydantic', 'starlette', "
            "'prometheus_client', 'httpx2', 'torch'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
