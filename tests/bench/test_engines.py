"""The engine-comparison harness runs end to end on a tiny model (figures: `make bench`)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from bench.engines import FORCED, main, runner, stale
from bench.random_models import M2M100_256K, QUICK
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


def test_m2m100_setting_forces_every_system_to_32_tokens_after_the_language(
        tmp_path: Path) -> None:
    out, work = tmp_path / "rows.jsonl", tmp_path / "work"
    systems = ("engine-int8", "ct2-float32")
    assert main(["--model", "m2m100-256k", "--quick", "--work", str(work), "--rounds", "1",
                 "--systems", ",".join(systems), "--out", str(out)]) == 0
    rows = read_jsonl(out)
    assert sorted((r["system"], r["setting"]) for r in rows) == sorted(
        (system, setting) for system in systems
        for setting in ("greedy b64", "greedy b1", "beam4 b64", "beam4 b1"))
    assert all(r["model"] == "m2m100-256k" and r["tokens_per_s"] > 0 and r["rounds"] == 1
               for r in rows)
    # 32 tokens, the forced target language token first among them, in every system
    assert {tuple(r["output_lengths"]) for r in rows} == {(FORCED,)}
    # generate (slow on every step: run here on two sources only) is forced alike
    generate = runner("generate", work, 1, M2M100_256K, QUICK["vocab"])
    assert generate(M2M100_256K.sources(QUICK["vocab"], 2), 1) == [FORCED, FORCED]
