"""The loader refuses damaged bundles with one clear error naming the bundle and the problem."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from inference.bundle import BundleError, check_contract, load_bundle_manifest
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
    with pytest.raises(BundleError, match=r"cache_mask 'no_such_mask' is not a state input"):
        load_bundle_manifest(bundle)


def test_format_1_bundles_are_refused_with_the_command_that_fixes_them(bundle: Path) -> None:
    edit_manifest(bundle, lambda raw: raw.update(format_version=1))
    with pytest.raises(BundleError) as refused:
        load_bundle_manifest(bundle)
    message = str(refused.value)
    assert "format version 1 is not supported" in message
    assert "`python -m training.export`" in message and "\n" not in message


@pytest.mark.parametrize(("part", "field"), [("decoder", "cache_mask"), ("decoder", "top_k"),
                                             ("decoder", "grouped_static"),
                                             ("state", "graph_writes"), ("state", "in_place")])
def test_every_field_the_engine_relies_on_is_required(bundle: Path, part: str, field: str
                                                      ) -> None:
    def drop(raw: dict[str, Any]) -> None:
        (raw["decoder"] if part == "decoder" else raw["decoder"]["state"][0]).pop(field)

    edit_manifest(bundle, drop)
    with pytest.raises(BundleError, match=rf"incomplete .*{part} lacks {field}"):
        load_bundle_manifest(bundle)


def test_a_cache_the_engine_cannot_write_in_place_is_refused(bundle: Path) -> None:
    edit_manifest(bundle, lambda raw: raw["decoder"]["state"][0].update(in_place=False))
    with pytest.raises(BundleError, match=r"grows but is not in_place; export the model again"):
        load_bundle_manifest(bundle)
