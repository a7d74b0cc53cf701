"""The bundle A/B harness runs and reports each bundle against the first one."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bundle_ab import main, rotated
from tests.conftest import read_jsonl


def test_bundle_ab_reports_medians_and_ratios(trained_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "ab.jsonl"
    int8 = trained_bundle / "int8"
    assert main([str(trained_bundle), str(int8), "--settings", "2x4,1x1",
                 "--rounds", "2", "--sentences", "4", "--out", str(out)]) == 0
    rows = read_jsonl(out)
    assert [(r["bundle"], r["setting"]) for r in rows] == [
        (str(bundle), setting) for setting in ("beam2 b4", "beam1 b1")
        for bundle in (trained_bundle, int8)]
    assert all(len(r["tokens_per_s_all"]) == 2 and r["tokens_per_s"] > 0 for r in rows)
    assert [r["ratio"] for r in rows[::2]] == [1.0, 1.0]  # the first bundle is the baseline
    for baseline, other in zip(rows[::2], rows[1::2], strict=True):
        assert other["ratio"] == pytest.approx(other["tokens_per_s"] / baseline["tokens_per_s"],
                                               abs=2e-3)


def test_bad_settings_name_the_form(trained_bundle: Path) -> None:
    with pytest.raises(SystemExit, match="BEAMxBATCH"):
        main([str(trained_bundle), "--settings", "4by64"])


def test_each_bundle_runs_first_in_turn() -> None:
    assert [rotated(["a", "b", "c"], turn) for turn in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
