"""The loader refuses damaged bundles with one clear error naming the bundle and the problem."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.bundle import BundleError, check_contract, load_bundle_manifest
from training.export.parity import sessions


@pytest.fixture
def bundle(transformer_bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(transformer_bundle, copy, ignore=shutil.ignore_patterns("int8"))
    return copy


def test_intact_bundle_loads_and_matches_its_graphs(bundle: Path) -> None:
    manifest = load_bundle_manifest(bundle)
    check_contract(bundle, manifest, *sessions(bundle))


def test_missing_file(bundle: Path) -> None:
    (bundle / "decoder.onnx").unlink()
    with pytest.raises(BundleError, match=r"bundle .*bundle: file decoder\.onnx is missing"):
        load_bundle_manifest(bundle)


def test_truncated_file_fails_its_checksum(bundle: Path) -> None:
    data = (bundle / "encoder.onnx").read_bytes()
    (bundle / "encoder.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match=r"checksum mismatch for encoder\.onnx"):
        load_bundle_manifest(bundle)


def edit_manifest(bundle: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite ``model.json`` after ``change`` edits its parsed content in place."""
    raw = json.loads((bundle / "model.json").read_text())
    change(raw)
    (bundle / "model.json").write_text(json.dumps(raw))


def test_unknown_format_version(bundle: Path) -> None:
    edit_manifest(bundle, lambda raw: raw.update(format_version=99))
    with pytest.raises(BundleError, match="format version 99 is not supported"):
        load_bundle_manifest(bundle)


def test_contract_that_does_not_match_the_graphs(bundle: Path) -> None:
    edit_manifest(bundle, lambda raw: raw["decoder"]["state"][0].update(
        input="past_key_renamed"))
    manifest = load_bundle_manifest(bundle)
    with pytest.raises(BundleError, match=r"state contract does not match.*past_key_renamed"):
        check_contract(bundle, manifest, *sessions(bundle))


def test_cache_mask_must_name_a_state_input(bundle: Path) -> None:
    def rename(raw: dict[str, Any]) -> None:
        assert raw["decoder"]["cache_mask"] == "past_mask"
        raw["decoder"]["cache_mask"] = "no_such_mask"

    edit_manifest(bundle, rename)
    manifest = load_bundle_manifest(bundle)
    with pytest.raises(BundleError, match=r"cache_mask 'no_such_mask' is not a state input"):
        check_contract(bundle, manifest, *sessions(bundle))


def test_bundles_from_before_the_cache_mask_still_load(bundle: Path) -> None:
    edit_manifest(bundle, lambda raw: raw["decoder"].pop("cache_mask"))
    manifest = load_bundle_manifest(bundle)
    assert manifest.decoder.cache_mask is None and not manifest.decoder.joinable
