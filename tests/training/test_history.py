"""Learning curves joined across runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.history import Point, continue_history, read_history, run_summary, write_history


def metrics(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_run_continues_where_the_previous_runs_end(tmp_path: Path) -> None:
    log = metrics(tmp_path / "m.jsonl", [
        {"kind": "train", "step": 10, "loss": 3.0},
        {"kind": "dev", "step": 250, "bleu": 7.0, "target_tokens": 400},
        {"kind": "dev", "step": 500, "bleu": 8.5, "target_tokens": 820}])
    previous = [Point(1, 1000, 30_000, 5.0), Point(2, 1200, 36_000, 6.0)]
    assert continue_history(previous, log) == [
        *previous, Point(3, 1450, 36_400, 7.0), Point(3, 1700, 36_820, 8.5)]
    assert continue_history([], log)[0] == Point(1, 250, 400, 7.0)


def test_history_round_trips_and_summarises_per_run(tmp_path: Path) -> None:
    points = [Point(1, 250, 1_000_000, 4.0), Point(1, 500, 2_000_000, 6.5),
              Point(2, 750, 3_500_000, 6.0)]
    write_history(tmp_path / "h.jsonl", points)
    assert read_history(tmp_path / "h.jsonl") == points
    assert read_history(tmp_path / "missing.jsonl") == []
    assert run_summary(points)[2:] == ["| 1 | 500 | 2.00 M | 6.5 |", "| 2 | 750 | 3.50 M | 6.0 |"]


def test_a_log_without_token_counts_is_refused(tmp_path: Path) -> None:
    log = metrics(tmp_path / "m.jsonl", [{"kind": "dev", "step": 250, "bleu": 7.0}])
    with pytest.raises(ValueError, match="without target_tokens"):
        continue_history([], log)
