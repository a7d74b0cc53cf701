"""Fixtures of the deployment tests: one ``cpu`` image built per session, removed at the end.

The image bakes in the real models when ``models/`` holds bundles (then the build context is
the repository itself, ``.dockerignore`` included); otherwise a tiny trained bundle, from a
temporary context holding a copy of what the Dockerfile needs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.containers import ROOT, container_cli, is_podman, require_engine

CONTEXT_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md")


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker until pyproject.toml lists it (a second registration is harmless)."""
    config.addinivalue_line(
        "markers", "container: builds and runs the container image with docker or podman, and "
                   "nginx in front of replicas (minutes; tests/deploy/containers.py: the engine)")


@dataclass(frozen=True)
class Image:
    """A built image and what it serves."""

    tag: str
    real_models: bool  # the repository's models/, else the tiny test bundle
    user_bundle: Path  # a bundle on the host to mount read-only as a custom model
    build_seconds: float


def real_bundles() -> list[Path]:
    """The bundles in the repository's models/ (empty until the trained models are added)."""
    return sorted(path.parent for path in (ROOT / "models").glob("*/model.json"))


def label_en_fr(bundle: Path) -> None:
    """The tiny bundle records no languages ("und"): label it and its int8 variant en->fr."""
    for manifest in (bundle / "model.json", bundle / "int8" / "model.json"):
        raw = json.loads(manifest.read_text())
        raw.update(source_lang="en", target_lang="fr")
        manifest.write_text(json.dumps(raw))


def tiny_context(bundle: Path, root: Path) -> Path:
    """A build context with the Dockerfile's inputs and ``bundle`` as models/tiny-en-fr."""
    context = root / "context"
    context.mkdir()
    for name in CONTEXT_FILES:
        shutil.copy2(ROOT / name, context / name)
    for package in ("inference", "service"):
        shutil.copytree(ROOT / package, context / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(bundle, context / "models" / "tiny-en-fr")
    label_en_fr(context / "models" / "tiny-en-fr")
    return context


def readable_copy(bundle: Path, root: Path) -> Path:
    """A copy of ``bundle`` that the image's user (uid 10001) can read when mounted."""
    copy = Path(shutil.copytree(bundle, root / "bundle",
                                ignore=shutil.ignore_patterns("weights")))
    for path in [copy, *copy.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return copy


def build(context: Path, tag: str, target: str) -> float:
    """Build ``target`` of the Dockerfile in ``context``; seconds taken."""
    started = time.monotonic()
    # podman's default OCI format has no HEALTHCHECK; docker builds that format already
    engine_flags = ["--format", "docker", "--layers=false"] if is_podman(require_engine()) else []
    container_cli("build", *engine_flags, "--target", target, "-t", tag,
                  "-f", str(context / "Dockerfile"), str(context), timeout=1800)
    return time.monotonic() - started


@pytest.fixture(scope="session")
def cpu_image(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Image]:
    """The ``cpu`` image, built once for every container test and removed afterwards."""
    require_engine()
    bundles = real_bundles()
    if bundles:
        context = ROOT
        int8 = bundles[0] / "int8"
        user_bundle = int8 if (int8 / "model.json").exists() else bundles[0]
    else:
        trained = request.getfixturevalue("trained_bundle")
        context = tiny_context(trained, tmp_path_factory.mktemp("image"))
        user_bundle = context / "models" / "tiny-en-fr" / "int8"
    user_bundle = readable_copy(user_bundle, tmp_path_factory.mktemp("user-models"))
    tag = f"localhost/seq2seq-serve:test-cpu-{os.getpid()}"
    seconds = build(context, tag, "cpu")
    try:
        yield Image(tag, bool(bundles), user_bundle, seconds)
    finally:
        container_cli("rmi", "-f", tag, check=False)
