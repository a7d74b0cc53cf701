"""The export command refuses what it cannot export, and never overwrites silently."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run_export(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "training.export", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("config", "message"), [
    ({"model_type": "bart"}, "'bart' checkpoint, which is not supported"),
    ({"model_type": "t5"}, "'t5' checkpoint, which is not supported"),
])
def test_other_architectures_are_refused(tmp_path: Path, config: dict[str, str], message: str
                                         ) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = run_export(str(tmp_path), str(tmp_path / "out"))
    assert result.returncode == 2
    assert message in result.stderr and "MarianMT" in result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_source_and_missing_weights(tmp_path: Path) -> None:
    result = run_export(str(tmp_path / "nope"), str(tmp_path / "out"))
    assert result.returncode == 2 and "not a directory" in result.stderr
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "marian"}))
    result = run_export(str(tmp_path), str(tmp_path / "out"))
    assert result.returncode == 2 and "cannot load the MarianMT weights" in result.stderr


def test_existing_output_needs_force(transformer_bundle: Path) -> None:
    before = (transformer_bundle / "model.json").read_text()
    result = run_export(str(transformer_bundle.parent / "model"), str(transformer_bundle))
    assert result.returncode == 2 and "--force" in result.stderr
    assert (transformer_bundle / "model.json").read_text() == before
