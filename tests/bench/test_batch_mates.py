"""The batch-mates bench compares each verse translated alone and in one call (quick sizes;
figures: ``python -m bench.batch_mates``, docs/reliability.md)."""

from __future__ import annotations

from pathlib import Path

from bench.batch_mates import main
from tests.conftest import REPO, read_jsonl, write_test_split


def test_a_float32_bundle_translates_a_verse_alike_alone_and_in_a_batch(tmp_path: Path) -> None:
    data = write_test_split(tmp_path / "test.jsonl", 8, seed=7)
    out = tmp_path / "rows.jsonl"
    lstm = REPO / "models" / "lstm-en-fr"
    assert main([str(lstm), str(lstm / "int8"), "--count", "8", "--data", str(data),
                 "--out", str(out)]) == 0
    rows = read_jsonl(out)
    assert [(Path(r["bundle"]).name, r["beam"], r["verses"]) for r in rows] == [
        ("lstm-en-fr", 1, 8), ("lstm-en-fr", 4, 8), ("int8", 1, 8), ("int8", 4, 8)]
    assert [r["differ"] for r in rows[:2]] == [0, 0]
    assert all(0 <= r["differ"] <= 8 for r in rows[2:])
