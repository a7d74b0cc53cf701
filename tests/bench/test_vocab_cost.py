"""The vocabulary-cost bench splits a profiled decoder step into its parts (tiny M2M100)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.vocab_cost import main
from tests.conftest import read_jsonl

PARTS = ("projection", "log_softmax", "top_k_head", "rest")


def test_each_part_of_a_step_is_measured(m2m100_bundle: Path, tmp_path: Path) -> None:
    out, work = tmp_path / "cost.jsonl", tmp_path / "work"
    assert main([str(m2m100_bundle), "--rows", "1,8", "--steps", "2", "--work", str(work),
                 "--out", str(out)]) == 0
    rows = read_jsonl(out)
    assert [(r["rows"], r["steps"]) for r in rows] == [(1, 2), (8, 2)]
    for row in rows:
        assert row["ms_per_step"] > 0
        assert all(row[part] > 0 for part in PARTS), row
        assert sum(row[part] for part in PARTS) == pytest.approx(1.0, abs=0.003)
    assert not list(work.glob("*.json"))  # the profiles are removed once read
