"""The worker-metrics harness reads the service's counters around a real load (quick sizes;
figures: ``python -m bench.worker_metrics``, docs/performance.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.worker_metrics import main
from tests.conftest import REPO, read_jsonl, write_test_split


def test_both_modes_report_engine_time_per_token(tmp_path: Path) -> None:
    data = write_test_split(tmp_path / "test.jsonl", 30, seed=3)
    out = tmp_path / "rows.jsonl"
    assert main(["--models", str(REPO / "models"), "--model", "lstm-en-fr", "--data", str(data),
                 "--seconds", "1", "--clients", "3", "--beam", "1", "--out", str(out)]) == 0
    rows = read_jsonl(out)
    assert [row["mode"] for row in rows] == ["request", "continuous"]
    for row in rows:
        assert row["sentences_per_s"] > 0 and row["errors"] == 0
        assert 0 < row["worker_busy"] <= 1.5  # engine seconds over wall seconds
        assert row["decode_steps"] > 0 and row["engine_calls"] > 0
        assert row["target_tokens"] > 0 and row["engine_ms_per_target_token"] > 0
        assert row["engine_ms_per_target_token"] == pytest.approx(
            row["engine_ms_per_step"] * row["decode_steps"] / row["target_tokens"], rel=0.05)


def test_missing_data_names_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(tmp_path / "none.jsonl")]) == 2
    assert "make data" in capsys.readouterr().err
