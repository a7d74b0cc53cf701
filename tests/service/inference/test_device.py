"""IO binding (``DeviceModel``): the state kept in ONNX Runtime memory gives exactly the
translations and scores of the numpy path, for both architectures, greedy and beam, with rows
leaving the batch at different steps. On this CPU-only machine it runs over host memory; the
CUDA run of the same code is in bench/gpu_check.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from service.bundle import BundleError
from service.inference import Translator
from service.inference.device import with_required_input
from service.inference.device_rows import RowGather
from tests.conftest import synthetic_pairs

# mixed lengths, so inputs finish at different steps and the batch is compacted
SENTENCES = [src for src, _ in synthetic_pairs(12, seed=5)] + ["fish.", "a " * 30, ""]
CPU = ["CPUExecutionProvider"]


@pytest.mark.parametrize("fixture", ["trained_concat_bundle", "lstm_bundle"])
@pytest.mark.parametrize(("beam", "hypotheses"), [(1, 1), (4, 3)])
def test_bound_state_translates_exactly_like_numpy(fixture: str, beam: int, hypotheses: int,
                                                   request: pytest.FixtureRequest) -> None:
    bundle: Path = request.getfixturevalue(fixture)
    plain = Translator.load(bundle, threads=1)
    bound = Translator.load(bundle, threads=1, io_binding=True)
    assert plain.device_model is None and bound.device_model is not None
    steps = bound.model.steps
    want = plain.translate(SENTENCES, beam_size=beam, num_hypotheses=hypotheses,
                           max_batch_tokens=64)
    got = bound.translate(SENTENCES, beam_size=beam, num_hypotheses=hypotheses,
                          max_batch_tokens=64)
    assert bound.model.steps > steps  # the bound path counted its decoder calls
    for mine, theirs in zip(got, want, strict=True):
        assert (mine.text, mine.score, mine.finish_reason) == (
            theirs.text, theirs.score, theirs.finish_reason)
        assert [(a.text, a.score) for a in mine.alternatives] == [
            (a.text, a.score) for a in theirs.alternatives]


def test_token_level_min_length_and_repetition_bans_go_through_the_bound_path(
        trained_concat_bundle: Path) -> None:
    plain = Translator.load(trained_concat_bundle, threads=1)
    bound = Translator.load(trained_concat_bundle, threads=1, io_binding=True)
    sources = plain.prepare(SENTENCES[:6]).sources
    for min_length, ngram in ((5, 0), (0, 2)):
        assert bound.translate_ids(sources, beam_size=3, min_length=min_length,
                                   no_repeat_ngram_size=ngram) == plain.translate_ids(
            sources, beam_size=3, min_length=min_length, no_repeat_ngram_size=ngram)


def test_in_place_caches_are_served_from_host_memory(trained_bundle: Path) -> None:
    assert Translator.load(trained_bundle, threads=1).device_model is None
    with pytest.raises(BundleError, match="--cache concat"):
        Translator.load(trained_bundle, threads=1, io_binding=True)


def test_row_gather_matches_numpy_for_every_rank_and_dtype() -> None:
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {"a": rng.normal(size=(5, 2, 3, 4)).astype(np.float32),
              "b": rng.normal(size=(5, 7)).astype(np.float16),
              "c": rng.integers(0, 9, size=(5, 6)).astype(np.int64)}
    gather = RowGather({name: value.dtype for name, value in arrays.items()}, CPU, 1, "cpu")
    index = np.array([4, 0, 0, 2])
    out = gather({name: ort.OrtValue.ortvalue_from_numpy(value)
                  for name, value in arrays.items()}, index)
    for name, value in arrays.items():
        np.testing.assert_array_equal(out[name].numpy(), value[index])
        assert out[name].numpy().dtype == value.dtype


def test_required_input_drops_only_that_initializer(trained_concat_bundle: Path) -> None:
    # the device path serves bundles whose caches the graph grows (their k has a default)
    original = onnx.load(str(trained_concat_bundle / "decoder.onnx"))
    changed = onnx.load_from_string(with_required_input(
        trained_concat_bundle / "decoder.onnx", "top_k"))
    before = {init.name for init in original.graph.initializer}
    after = {init.name for init in changed.graph.initializer}
    assert before - after == {"top_k"}
    session = ort.InferenceSession(changed.SerializeToString(), providers=CPU)
    assert "top_k" in {arg.name for arg in session.get_inputs()}


def test_io_binding_is_off_by_default_on_the_cpu(trained_bundle: Path) -> None:
    assert Translator.load(trained_bundle, threads=1).device_model is None


def test_serving_without_io_binding_never_imports_onnx() -> None:
    """The `serve` extra (the CPU image) has no `onnx`; only IO binding needs it."""
    code = ("import sys, service.api, service.inference, service.inference.device; "
            "assert 'onnx' not in sys.modules, 'onnx imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[3])
