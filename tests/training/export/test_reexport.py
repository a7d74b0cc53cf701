"""Re-exporting a packaged bundle: exact fp32 weights back from its graphs, either cache
layout, same tokens, evaluations redone, records and weights kept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from service.bundle import load_bundle_manifest
from service.inference import Translator
from tests.training.scoring import split_bleu
from training.errors import run_cli
from training.export.reexport import main as reexport_main
from training.export.reexport import random_sources, restore_exact_weights
from training.export.sources import load_source
from training.package import main as package_main

FLAGS = ["--src-version", "en", "--ref-version", "fr", "--multi-refs", "fr"]


@pytest.fixture(scope="module")
def packaged(trained_bundle: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Path:
    run = trained_bundle.parent / "run"
    (run / "config.yaml").write_text(yaml.safe_dump({"data": str(tiny_data),
                                                     "model": {"arch": "transformer"}}))
    root = tmp_path_factory.mktemp("packaged")
    assert package_main([str(run), "tiny-en-fr", "--models", str(root), *FLAGS]) == 0
    return root / "tiny-en-fr"


def test_fp16_weights_get_their_exact_fp32_values_back(packaged: Path, trained_bundle: Path
                                                       ) -> None:
    source = load_source(packaged / "weights")
    exact = load_source(trained_bundle.parent / "run" / "best").module  # the fp32 checkpoint
    exact_params = dict(exact.named_parameters())
    rounded = [name for name, p in source.module.named_parameters()
               if not torch.equal(p, exact_params[name])]
    assert rounded  # fp16 storage rounded them
    # graphs exported from the fp32 checkpoint (package itself exports from the fp16 copy)
    assert restore_exact_weights(source.module, trained_bundle) > 0
    for name, param in source.module.named_parameters():
        assert torch.equal(param, exact_params[name]), name


@pytest.mark.parametrize("cache", ["concat", "in-place"])
def test_reexport_switches_the_cache_layout_and_keeps_the_records(
        packaged: Path, tiny_data: Path, tmp_path: Path, cache: str) -> None:
    bundle = tmp_path / "tiny-en-fr"
    shutil.copytree(packaged, bundle)
    assert reexport_main([str(bundle), "--cache", cache, "--check", "40", "--data",
                          str(tiny_data), *FLAGS]) == 0  # fp32 agreement checked inside
    for variant in (bundle, bundle / "int8"):
        manifest = load_bundle_manifest(variant)
        assert manifest.decoder.in_place == (cache == "in-place")
        recorded = manifest.metadata["evaluation"]["beam4"]["bleu"]  # evaluated again, its own
        assert recorded == split_bleu(variant, tiny_data, beam=4), variant.name
    sources = random_sources(16, 300, eos=1, seed=5)
    assert Translator.load(bundle).translate_ids(sources, max_length=20) == Translator.load(
        packaged).translate_ids(sources, max_length=20)  # same weights, same greedy ids
    assert (bundle / "weights" / "model.safetensors").is_file()
    assert "## Re-exported" in (bundle / "README.md").read_text()
    assert set(json.loads((bundle / "figures.json").read_text())) == {"fp32", "int8"}


def test_reexport_refuses_a_bundle_without_weights(trained_bundle: Path, tiny_data: Path,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "bare"
    shutil.copytree(trained_bundle, bundle)
    assert run_cli(reexport_main, [str(bundle), "--data", str(tiny_data)]) == 2
    assert "weights/" in capsys.readouterr().err
    assert load_bundle_manifest(bundle).decoder.in_place  # left as it was
