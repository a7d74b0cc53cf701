"""Copies of the real tiny exported bundle for the reliability tests."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inference.bundle import MANIFEST


def edit_manifest(bundle: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite ``model.json`` after ``change`` edits its raw dict."""
    raw = json.loads((bundle / MANIFEST).read_text())
    change(raw)
    (bundle / MANIFEST).write_text(json.dumps(raw))


def relabel(raw: dict[str, Any]) -> None:
    """The fixture's bundle says "und"; serve it as en->fr."""
    raw.update(source_lang="en", target_lang="fr")


def add_bundle(trained: Path, root: Path, name: str) -> Path:
    """The trained fp32 bundle (no int8 variant) copied to ``root/name``, labelled en->fr."""
    bundle = Path(shutil.copytree(trained, root / name, ignore=shutil.ignore_patterns("int8")))
    edit_manifest(bundle, relabel)
    return bundle
