"""The decoder's in-graph top-k head: same candidates as numpy over the full log-probs, same
translations with and without it, and the upgrade of bundles exported before it existed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from service.bundle import load_bundle_manifest
from service.inference import Translator
from service.inference.onnx_decoder import OnnxModel, OnnxState
from service.inference.search import top_k
from tests.conftest import synthetic_pairs
from tests.export_fixtures import force_blocked_head, strip_head
from training.errors import run_cli
from training.export.top_k import main as upgrade_main

SENTENCES = [src for src, _ in synthetic_pairs(10, seed=11)] + ["fish.", "the the the the"]


def test_numpy_top_k_is_sorted_with_lower_ids_first_on_ties() -> None:
    rng = np.random.default_rng(0)
    log_probs = np.round(rng.normal(size=(6, 40)), 1).astype(np.float32)  # many ties
    for k in (1, 3, 8, 40, 50):
        found = top_k(log_probs, k)
        for row, ids, values in zip(log_probs.tolist(), found.ids, found.values, strict=True):
            expected = sorted(range(40), key=lambda i: (-row[i], i))[:k]
            assert ids.tolist() == expected
            assert values.tolist() == [row[i] for i in expected]


@pytest.mark.parametrize("variant", ["", "int8"])
def test_graph_head_matches_numpy_on_the_full_log_probs(trained_bundle: Path, variant: str
                                                        ) -> None:
    model: OnnxModel = Translator.load(trained_bundle / variant).model
    assert model.top_k is not None
    ids = np.array([[5, 9, 14, 1], [7, 1, 0, 0]], dtype=np.int64)
    state = model.encode(ids, (ids > 0).astype(np.int64))
    tokens = np.array([2, 2], dtype=np.int64)

    def fresh() -> OnnxState:  # a step writes its cache entry into the state's buffers
        return state.copy()

    log_probs, _ = model.step(tokens, fresh())
    for k in (1, 5, 9):
        found, after = model.step_top_k(tokens, fresh(), k)
        expected = top_k(log_probs, k)
        assert found.ids.tolist() == expected.ids.tolist()
        np.testing.assert_allclose(found.values, expected.values, rtol=0, atol=1e-6)
        assert after.carried.keys() == state.carried.keys()


@pytest.mark.parametrize("options", [
    {"beam_size": 1}, {"beam_size": 4}, {"beam_size": 4, "min_length": 6},
    {"beam_size": 3, "num_hypotheses": 3, "early_stopping": True},
    {"beam_size": 1, "min_length": 4}])
def test_translations_do_not_depend_on_the_head(trained_bundle: Path, options: dict) -> None:
    with_head = Translator.load(trained_bundle)
    without = Translator.load(trained_bundle)
    without.model.top_k = None  # every step reduces the full log-probs in numpy instead
    assert_same_translations(with_head, without, options)


def assert_same_translations(a: Translator, b: Translator, options: dict) -> None:
    """Same texts, n-best texts and scores (to 1e-6) for ``SENTENCES`` under ``options``."""
    first = a.translate(SENTENCES, return_scores=True, **options)
    second = b.translate(SENTENCES, return_scores=True, **options)
    assert [(r.text, [h.text for h in r.alternatives]) for r in first] == [
        (r.text, [h.text for h in r.alternatives]) for r in second]
    np.testing.assert_allclose([r.score for r in first], [r.score for r in second], atol=1e-6)


def assert_upgrade_keeps_translations(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Upgrading ``bundle`` and its int8 variant changes both, records the head (checksums
    updated) and keeps beam-4 texts and scores; a second upgrade changes nothing."""
    before = Translator.load(bundle).translate(SENTENCES, beam_size=4, return_scores=True)
    assert upgrade_main([str(bundle)]) == 0
    assert capsys.readouterr().out.count('"added": true') == 2
    for directory in (bundle, bundle / "int8"):
        assert load_bundle_manifest(directory).decoder.top_k is not None
    after = Translator.load(bundle).translate(SENTENCES, beam_size=4, return_scores=True)
    assert [(r.text, r.score) for r in after] == [(r.text, r.score) for r in before]
    assert upgrade_main([str(bundle)]) == 0
    assert capsys.readouterr().out.count('"added": false') == 2


def test_upgrade_adds_the_head_to_old_bundles(trained_bundle: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "old"
    shutil.copytree(trained_bundle, bundle)
    for directory in (bundle, bundle / "int8"):
        strip_head(directory)
    assert Translator.load(bundle).model.top_k is None
    assert_upgrade_keeps_translations(bundle, capsys)


def test_upgrade_refuses_a_damaged_bundle(trained_bundle: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "damaged"
    shutil.copytree(trained_bundle, bundle)
    strip_head(bundle)
    (bundle / "encoder.onnx").write_bytes(b"truncated")
    decoder = (bundle / "decoder.onnx").read_bytes()
    assert run_cli(upgrade_main, [str(bundle)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "checksum mismatch for encoder.onnx" in error
    assert "\n" not in error
    assert (bundle / "decoder.onnx").read_bytes() == decoder


def test_blocked_head_translates_like_the_plain_one(trained_bundle: Path, tmp_path: Path
                                                    ) -> None:
    # The trained fixture's vocabulary is below BLOCKED_MIN_VOCAB: force the blocked form
    # (padded to one block, so beam 4's k = 8 exceeds the block count).
    bundle = tmp_path / "blocked"
    shutil.copytree(trained_bundle, bundle, ignore=shutil.ignore_patterns("int8"))
    force_blocked_head(bundle)
    ops = [node.op_type for node in onnx.load(str(bundle / "decoder.onnx")).graph.node]
    assert ops.count("TopK") == 3 and "ReduceMax" in ops
    for options in ({"beam_size": 1}, {"beam_size": 4, "num_hypotheses": 2}):
        assert_same_translations(Translator.load(trained_bundle), Translator.load(bundle),
                                 options)


def test_upgrade_replaces_a_head_of_the_other_form(trained_bundle: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "other-head"
    shutil.copytree(trained_bundle, bundle)
    for directory in (bundle, bundle / "int8"):
        force_blocked_head(directory)  # a small vocabulary gets the plain head now
    assert_upgrade_keeps_translations(bundle, capsys)
    for directory in (bundle, bundle / "int8"):
        graph = onnx.load(str(directory / "decoder.onnx")).graph
        assert [n.op_type for n in graph.node].count("TopK") == 1
        assert not any(n.name.startswith("top_k_head/") for n in graph.node)
