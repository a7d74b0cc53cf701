"""The engine-comparison harness runs end to end on a tiny model (figures: `make bench`)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from bench.engines import main, stale
from bench.report import main as report_main
from inference.bundle import MANIFEST, read_manifest
from tests.conftest import read_jsonl
from training.export.graphs import DEFAULT_OPSET


def test_engine_harness_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "rows.jsonl"
    assert main(["--quick", "--work", str(tmp_path / "work"), "--rounds", "2",
                 "--systems", "engine-int8,ct2-int8", "--out", str(out)]) == 0
    rows = read_jsonl(out)
    assert {(r["system"], r["setting"]) for r in rows} == {
        (system, setting) for system in ("engine-int8", "ct2-int8")
        for setting in ("greedy b64", "greedy b1", "beam4 b64", "beam4 b1")}
    assert all(r["tokens_per_s"] > 0 and r["peak_rss_mb"] > 0 for r in rows)
    assert all(len(r["tokens_per_s_all"]) == 2 and r["rounds"] == 2 for r in rows)
    assert report_main([str(out), "--png", str(tmp_path / "chart.png")]) == 0
    assert (tmp_path / "chart.png").stat().st_size > 1000


def test_cached_bench_bundles_exported_differently_are_rebuilt(
        transformer_bundle: Path, tmp_path: Path) -> None:
    assert not stale(transformer_bundle)  # exported now: current format and opset
    old_opset = tmp_path / "old-opset"
    shutil.copytree(transformer_bundle, old_opset, ignore=shutil.ignore_patterns("int8"))
    manifest = read_manifest(old_opset)
    (old_opset / MANIFEST).write_text(replace(manifest, opset=DEFAULT_OPSET - 2).to_json())
    assert stale(old_opset)
    (old_opset / MANIFEST).write_text(replace(manifest, format_version=1).to_json())
    assert stale(old_opset)
