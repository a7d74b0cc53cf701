"""The in-process saturation harness runs both modes in turns and reports consistent figures
(quick sizes; figures: ``python -m bench.saturation``, docs/performance.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.saturation import main
from tests.conftest import write_test_split


@pytest.mark.parametrize(("fixture", "flags"), [("trained_bundle", []),
                                               ("trained_bundle", ["--io-binding"])])
def test_saturation_reports_rounds_and_ratio(fixture: str, flags: list[str], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             request: pytest.FixtureRequest) -> None:
    bundle: Path = request.getfixturevalue(fixture)
    data = write_test_split(tmp_path / "test.jsonl", 12, seed=4)
    assert main(["--bundle", str(bundle), "--data", str(data), "--inflight", "4",
                 "--sentences", "12", "--beam", "2", "--rounds", "3", *flags]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(report["round_ratios"]) == 3
    assert report["request_s"] > 0 and report["continuous_s"] > 0
    assert report["continuous_over_request_throughput"] == pytest.approx(
        report["request_s"] / report["continuous_s"], abs=0.0051)  # of the reported medians
    assert 0 < report["mean_rows"] <= 4 * 2  # at most 4 inputs of 2 beams run at once
    assert report["mean_cache_columns"] > 0


def test_missing_data_names_the_fix(trained_bundle: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bundle", str(trained_bundle), "--data", str(tmp_path / "none.jsonl")]) == 2
    assert "make data" in capsys.readouterr().err
