"""The decoder's in-graph top-k head: same candidates as numpy over the full log-probs, same
translations with and without it, and with the blocked form of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from inference import Translator
from inference.kv_cache import KVCache
from inference.onnx_decoder import OnnxModel
from inference.search import top_k
from tests.conftest import synthetic_pairs
from tests.export_fixtures import force_blocked_head

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

    def fresh() -> KVCache:  # a step writes its cache entry into the state's buffers
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


def test_blocked_head_translates_like_the_plain_one(trained_bundle: Path, tmp_path: Path
                                                    ) -> None:
    # The trained fixture's vocabulary is below BLOCKED_MIN_VOCAB: force the blocked form
    # (two blocks of 150 ids, so beam 4's k = 8 exceeds the block count).
    bundle = tmp_path / "blocked"
    shutil.copytree(trained_bundle, bundle, ignore=shutil.ignore_patterns("int8"))
    force_blocked_head(bundle)
    ops = [node.op_type for node in onnx.load(str(bundle / "decoder.onnx")).graph.node]
    assert ops.count("TopK") == 3 and "ReduceMax" in ops
    for options in ({"beam_size": 1}, {"beam_size": 4, "num_hypotheses": 2}):
        assert_same_translations(Translator.load(trained_bundle), Translator.load(bundle),
                                 options)
