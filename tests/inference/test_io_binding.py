"""IO binding (``OrtMemory``): the state kept in ONNX Runtime values, the key/value buffers
written in place by the graph, gives exactly the translations and scores of the host path,
for both architectures, greedy and beam, with rows leaving the batch at different steps. Here
the values are CPU ``OrtValue`` s; the CUDA run of the same code is bench/gpu_check.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from inference import Translator
from inference.memory import HostMemory, OrtMemory
from inference.session import with_required_input
from tests.conftest import synthetic_pairs

# mixed lengths, so inputs finish at different steps and the batch is compacted
SENTENCES = [src for src, _ in synthetic_pairs(12, seed=5)] + ["fish.", "a " * 30, ""]
CPU = ["CPUExecutionProvider"]


@pytest.mark.parametrize("fixture", ["trained_bundle", "lstm_bundle"])
@pytest.mark.parametrize(("beam", "hypotheses"), [(1, 1), (4, 3)])
def test_bound_state_translates_exactly_like_numpy(fixture: str, beam: int, hypotheses: int,
                                                   request: pytest.FixtureRequest) -> None:
    bundle: Path = request.getfixturevalue(fixture)
    plain = Translator.load(bundle, threads=1)
    bound = Translator.load(bundle, threads=1, io_binding=True)
    assert isinstance(plain.model.memory, HostMemory)
    assert isinstance(bound.model.memory, OrtMemory)
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
        trained_bundle: Path) -> None:
    plain = Translator.load(trained_bundle, threads=1)
    bound = Translator.load(trained_bundle, threads=1, io_binding=True)
    sources = plain.prepare(SENTENCES[:6]).sources
    for min_length, ngram in ((5, 0), (0, 2)):
        assert bound.translate_ids(sources, beam_size=3, min_length=min_length,
                                   no_repeat_ngram_size=ngram) == plain.translate_ids(
            sources, beam_size=3, min_length=min_length, no_repeat_ngram_size=ngram)


def test_device_row_ops_match_numpy_for_every_rank_and_dtype() -> None:
    memory = OrtMemory("cpu", CPU, 1)
    rng = np.random.default_rng(0)
    for array in (rng.normal(size=(5, 2, 3, 4)).astype(np.float32),
                  rng.normal(size=(5, 7)).astype(np.float16),
                  rng.integers(0, 9, size=(5, 6)).astype(np.int64)):
        value = memory.upload(array)
        index = np.array([4, 0, 0, 2])
        np.testing.assert_array_equal(memory.download(memory.take(value, index)), array[index])
        axis = array.ndim - 1
        grown = memory.download(memory.resize(value, axis, array.shape[axis] + 2))
        np.testing.assert_array_equal(grown[..., : array.shape[axis]], array)
        assert not grown[..., array.shape[axis] :].any()
        cut = memory.download(memory.resize(value, axis, 1))
        np.testing.assert_array_equal(cut, array[..., :1])
        joined = memory.download(memory.append(memory.upload(array[:2, ..., :1]), value, axis))
        assert joined.dtype == array.dtype and joined.shape == (7, *array.shape[1:])
        np.testing.assert_array_equal(joined[2:], array)
        np.testing.assert_array_equal(joined[:2, ..., :1], array[:2, ..., :1])
        assert not joined[:2, ..., 1:].any()


def test_required_input_drops_only_that_initializer(lstm_bundle: Path) -> None:
    # an RNN bundle's k has a default, which IO binding cannot bind
    original = onnx.load(str(lstm_bundle / "decoder.onnx"))
    changed = onnx.load_from_string(with_required_input(lstm_bundle / "decoder.onnx", "top_k"))
    before = {init.name for init in original.graph.initializer}
    after = {init.name for init in changed.graph.initializer}
    assert before - after == {"top_k"}
    session = ort.InferenceSession(changed.SerializeToString(), providers=CPU)
    assert "top_k" in {arg.name for arg in session.get_inputs()}


def test_io_binding_is_off_by_default_on_the_cpu(trained_bundle: Path) -> None:
    assert isinstance(Translator.load(trained_bundle, threads=1).model.memory, HostMemory)


def test_serving_without_io_binding_never_imports_onnx() -> None:
    """The `serve` extra (the CPU image) has no `onnx`; only IO binding needs it."""
    code = ("import sys, service.api, inference, inference.memory; "
            "assert 'onnx' not in sys.modules, 'onnx imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[3])
