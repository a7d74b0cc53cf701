"""A sentencepiece (OPUS-MT) bundle served from an install with only the ``serve`` extra: a
fresh venv with ``pip install '.[serve]'`` from PyPI, the server started from it outside the
repository. The venv's dependencies are cached under pytest's cache directory, keyed by
pyproject.toml; the project itself is reinstalled on every run."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.checkpoints import sample_sentences
from tests.service.api.fakes import copy_bundle
from tests.service.api.test_opus_mt import expected_texts
from tests.service.api.test_real_model import call, listening_port, log_tail, wait_for_ready

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def project_copy(root: Path) -> Path:
    """What the wheel is built from, copied under ``root`` (the build writes next to it)."""
    root.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, root / name)
    for package in ("inference", "service", "training"):
        shutil.copytree(ROOT / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return root


def serve_venv(cache: Path, project: Path) -> Path:
    """A venv holding ``project`` with its ``serve`` extra (and nothing else)."""
    key = hashlib.sha1((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    venv = cache / f"serve-{key}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").is_file():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"{project}[serve]"],
                       check=True, timeout=1200)
        (venv / ".complete").touch()
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--force-reinstall", str(project)], check=True, timeout=600)
    return python


def outside_env() -> dict[str, str]:
    """This environment without what points Python at the repository or its venv."""
    return {name: value for name, value in os.environ.items()
            if name not in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_serve_extra_serves_a_sentencepiece_marian_bundle(
        opus_mt_bundle: Path, opus_mt_dir: Path, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    python = serve_venv(cache.mkdir("serve-extra-venv") if cache is not None
                        else tmp_path / "venvs", project_copy(tmp_path / "src"))
    probe = subprocess.run([str(python), "-c", "import importlib.util as u; "
                            "print(u.find_spec('torch') is None, u.find_spec('sentencepiece')"
                            " is not None)"], capture_output=True, text=True, cwd=tmp_path,
                           env=outside_env())
    assert probe.stdout.split() == ["True", "True"], probe.stderr
    models = tmp_path / "models"
    copy_bundle(opus_mt_bundle, models, opus_mt_bundle.name)
    log = tmp_path / "server.log"
    with log.open("wb") as out:  # outside the repository: only the installed package runs
        process = subprocess.Popen(
            [str(python), "-m", "service", "--port", "0", "--models", str(models)],
            cwd=tmp_path, env={**outside_env(), "TRANSLATE_THREADS": "1",
                               "TRANSLATE_DRAIN_TIMEOUT_S": "5"},
            stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{listening_port(process, log)}"
        wait_for_ready(base, process, log)
        texts = sample_sentences(6)
        status, _, body = call(f"{base}/translate", {"text": texts, "model": opus_mt_bundle.name,
                                                     "beam_size": 1, "max_length": 40})
        assert status == 200, body
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, log_tail(log)
    assert [t["text"] for t in body["translations"]] == expected_texts(
        opus_mt_dir, texts, num_beams=1, max_new_tokens=40)
