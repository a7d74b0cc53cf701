"""The benchmark entry point runs (quick sizes) and reports both architectures."""

from __future__ import annotations

import json

import pytest

from bench.__main__ import main


def test_bench_quick_reports_both_architectures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r.get("config") for r in rows[:2]] == ["transformer-en-fr", "lstm-en-fr"]
    assert all(r["median_tok_s"] > 0 for r in rows[:2])
    assert rows[2]["ratio_transformer_over_lstm"] > 0
