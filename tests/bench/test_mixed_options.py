"""The mixed-options benchmark runs and reports both ways of calling the decoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.mixed_options import main
from tests.conftest import write_test_split


def test_mixed_options_reports_two_calls_and_one(trained_bundle: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = write_test_split(tmp_path / "test.jsonl", 6, seed=0, langs=("en", "fr"))
    assert main(["--bundle", str(trained_bundle), "--data", str(data), "--sentences", "1,3",
                 "--steps", "2", "--repeats", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["sentences"] for row in rows] == [1, 3]
    for row in rows:
        assert row["two_calls_ms_per_step"] > 0 and row["one_call_ms_per_step"] > 0
        ratio = row["two_calls_ms_per_step"] / row["one_call_ms_per_step"]
        assert row["two_over_one"] == pytest.approx(ratio, abs=0.01)


def test_mixed_options_names_the_missing_data(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(tmp_path / "none.jsonl")]) == 2
    assert "make data" in capsys.readouterr().err
