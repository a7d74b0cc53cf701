"""The GPU check script runs end to end (on the CPU here, with ``--allow-cpu``) and refuses to
pretend when CUDA is missing."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime as ort
import pytest

from bench.gpu_check import main


def test_dry_run_reports_agreement_and_both_timings(lstm_bundle: Path,
                                                    trained_bundle: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bundles", f"{lstm_bundle},{trained_bundle}", "--out",
                 str(tmp_path), "--repeats", "1", "--allow-cpu", "--continuous"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()][1:]
    loops = [row for row in lines if row.get("check") == "continuous"]
    rows = [row for row in lines if row.get("check") != "continuous"]
    assert [row["bundle"] for row in loops] == [str(lstm_bundle), str(trained_bundle)]
    for loop in loops:  # the loop gives request-level's translations, bound or not
        assert loop["host_same_as_request"] == 1.0 and loop["continuous_host_ms"] > 0
        assert loop["bound_same_as_request"] == 1.0
    assert [(row["bundle"], row["beam"]) for row in rows] == [
        (str(bundle), beam) for bundle in (lstm_bundle, trained_bundle) for beam in (1, 4)]
    for row in rows:
        assert row["provider"] == "CPUExecutionProvider"
        assert row["same_as_cpu"] == 1.0  # the bound path on the CPU is the CPU's result
        assert row["unbound_b64_ms"] > 0 and row["unbound_b1_ms"] > 0
        assert row["bound_b64_ms"] > 0 and row["bound_b1_ms"] > 0
    assert len((tmp_path / "gpu_check.jsonl").read_text().splitlines()) == 7


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(),
                    reason="a CUDA build is installed")
def test_without_cuda_it_stops_with_the_fix(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path)]) == 2
    assert "onnxruntime-gpu" in capsys.readouterr().err
