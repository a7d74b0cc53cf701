"""``python -m training.export OWNER/NAME OUT``: a hub id resolved with ``huggingface_hub``,
offline, from a hub cache laid out by the test as the hub client lays it out."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from inference.bundle import read_manifest

ROOT = Path(__file__).resolve().parents[3]
HUB_ID = "test-org/opus-mt-en-fr"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_cache(checkpoint: Path, root: Path) -> Path:
    """``root`` as a hub cache holding ``checkpoint`` as ``HUB_ID`` at revision main."""
    repo = root / ("models--" + HUB_ID.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(checkpoint, snapshot, ignore=shutil.ignore_patterns("spm"))
    return root


def export_offline(src: str, out: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "training.export", src, str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)


def test_a_hub_id_is_exported_from_the_cache(opus_mt_dir: Path, tmp_path: Path) -> None:
    cache = hub_cache(opus_mt_dir, tmp_path / "hub")
    done = export_offline(HUB_ID, tmp_path / "models" / "opus-mt-en-fr", cache)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["out"].endswith("opus-mt-en-fr")
    manifest = read_manifest(tmp_path / "models" / "opus-mt-en-fr")
    assert (manifest.name, manifest.source_lang, manifest.target_lang) == (
        "opus-mt-en-fr", "en", "fr")
    assert manifest.metadata["checkpoint"] == HUB_ID


def test_an_id_the_cache_lacks_offline_is_one_line(tmp_path: Path) -> None:
    done = export_offline("test-org/opus-mt-xx-yy", tmp_path / "out", tmp_path / "empty")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "test-org/opus-mt-xx-yy" in done.stderr
    assert "Hugging Face hub cannot give it" in done.stderr
    assert not (tmp_path / "out").exists()
