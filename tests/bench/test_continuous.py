"""The batching comparison harness runs end to end against the real server (quick sizes;
figures: ``python -m bench.continuous``, docs/performance.md)."""

from __future__ import annotations

from pathlib import Path

from bench.continuous import main
from tests.conftest import REPO, read_jsonl, write_test_split


def test_harness_measures_both_modes(tmp_path: Path) -> None:
    data = write_test_split(tmp_path / "test.jsonl", 40, seed=2)
    out = tmp_path / "rows.jsonl"
    assert main(["--models", str(REPO / "models"), "--model", "lstm-en-fr", "--data", str(data),
                 "--seconds", "1", "--rounds", "2", "--warmup", "0.5",
                 "--saturate-clients", "4", "--loads", "0.5", "--load-rounds", "2",
                 "--beam", "1", "--out", str(out), "--png", str(tmp_path / "chart.png")]) == 0
    rows = read_jsonl(out)
    for mode in ("request", "continuous"):
        kinds = {r["kind"]: r for r in rows if r.get("mode") == mode}
        saturated = [r for r in rows if r.get("mode") == mode and r["kind"] == "saturated"]
        assert [r["round"] for r in saturated] == [0, 1]
        assert all(r["sentences_per_s"] > 0 and r["errors"] == 0 for r in saturated)
        assert kinds["open_loop"]["errors"] == 0 and kinds["open_loop"]["p50_ms"] > 0
        stream = kinds["stream"]
        assert 0 < stream["stream_first_sentence_ms"] <= stream["stream_done_ms"]
    summary = rows[-1]
    assert summary["kind"] == "summary" and summary["saturated_throughput_ratio"] > 0
    assert len(summary["saturated_round_ratios"]) == 2
    open_loop = [(r["round"], r["mode"]) for r in rows if r.get("kind") == "open_loop"]
    assert open_loop == [(0, "request"), (0, "continuous"), (1, "continuous"), (1, "request")]
    ratios = summary["p50_round_ratios_at_50pct"]
    assert len(ratios) == 2 and all(ratio > 0 for ratio in ratios)
    assert summary["p50_ratio_at_50pct"] > 0
    # the modes took turns, order flipped each round: request, continuous, continuous, request
    order = [r["mode"] for r in rows if r.get("kind") == "saturated"]
    assert order == ["request", "continuous", "continuous", "request"]
    assert (tmp_path / "chart.png").stat().st_size > 0
