"""The ONNX engine against transformers' generate, and the Translator's text-level contract."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import onnxruntime
import pytest
import torch

from inference import Translator
from inference.session import CUDA, ProviderError
from tests.conftest import synthetic_pairs
from training.checkpoint import load_model_dir
from training.models.marian import MarianSeq2Seq

SENTENCES = [src for src, _ in synthetic_pairs(12, seed=5)] + ["fish.", "the the the the"]


@pytest.fixture(scope="module")
def translator(trained_bundle: Path) -> Translator:
    return Translator.load(trained_bundle)


def generate(bundle: Path, sources: list[list[int]], **kwargs: object
             ) -> tuple[list[list[int]], list[float] | None]:
    """transformers' generate on the same weights: ids (eos/pad stripped) and scores."""
    model, _ = load_model_dir(bundle.parent / "run" / "best")
    assert isinstance(model, MarianSeq2Seq)
    marian: Any = model.model
    width = max(map(len, sources))
    ids = torch.zeros(len(sources), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, source in enumerate(sources):
        ids[row, : len(source)] = torch.tensor(source)
        mask[row, : len(source)] = 1
    with torch.no_grad():
        out = marian.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                              forced_eos_token_id=None, return_dict_in_generate=True,
                              output_scores=True, **kwargs)
    result = []
    for row in out.sequences[:, 1:].tolist():
        result.append(row[: row.index(1)] if 1 in row else row)
    scores = out.sequences_scores.tolist() if "sequences_scores" in out else None
    return result, scores


def sources_of(translator: Translator) -> list[list[int]]:
    return [translator.tokenizer(text)["input_ids"] for text in SENTENCES]


def test_outputs_end_at_varied_lengths(translator: Translator) -> None:
    lengths = {len(ids) for ids in translator.translate_ids(sources_of(translator), max_length=30)}
    assert len(lengths) >= 3


def test_greedy_equals_generate(translator: Translator, trained_bundle: Path) -> None:
    sources = sources_of(translator)
    expected, _ = generate(trained_bundle, sources, num_beams=1, max_new_tokens=20)
    assert translator.translate_ids(sources, beam_size=1, max_length=20) == expected


@pytest.mark.parametrize(("beam", "hyps", "penalty", "early"),
                         [(4, 1, 1.0, False), (4, 3, 0.6, False), (2, 2, 0.0, False),
                          # length penalty 2: early stopping changes 3 of the 14 results here
                          (4, 4, 2.0, False), (4, 4, 2.0, True)])
def test_beam_equals_generate_with_scores(translator: Translator, trained_bundle: Path,
                                          beam: int, hyps: int, penalty: float,
                                          early: bool) -> None:
    sources = sources_of(translator)
    expected, scores = generate(trained_bundle, sources, num_beams=beam, max_new_tokens=20,
                                num_return_sequences=hyps, length_penalty=penalty,
                                early_stopping=early)
    from inference.options import DecodeOptions

    results = translator.search(sources, DecodeOptions(
        beam_size=beam, num_hypotheses=hyps, length_penalty=penalty, early_stopping=early,
        max_length=20))
    got = [h.tokens for row in results for h in row]
    assert got == expected
    assert scores is not None
    assert [h.score for row in results for h in row] == pytest.approx(scores, abs=1e-4)


def test_input_order_is_kept_across_sub_batches(translator: Translator) -> None:
    sources = sources_of(translator)
    whole = translator.translate_ids(sources, beam_size=2, max_length=20)
    tiny_batches = translator.translate_ids(sources, beam_size=2, max_length=20,
                                            max_batch_tokens=24)
    one_by_one = [translator.translate_ids([s], beam_size=2, max_length=20)[0] for s in sources]
    assert whole == tiny_batches == one_by_one


def test_text_results_carry_scores_alternatives_and_usage(translator: Translator) -> None:
    results = translator.translate(SENTENCES[:3], beam_size=3, num_hypotheses=2)
    assert len(results) == 3
    for result, text in zip(results, SENTENCES[:3], strict=True):
        assert result.text == result.alternatives[0].text
        assert len(result.alternatives) == 2
        assert result.alternatives[0].score >= result.alternatives[1].score
        assert result.finish_reason in ("eos", "length") and not result.truncated
        assert result.source_tokens == len(translator.tokenizer(text)["input_ids"])
        assert result.target_tokens >= 1


def test_long_text_is_split_into_sentences(translator: Translator) -> None:
    """Cut into sentences, each translated as it is alone, put back between the text's own
    separators (spaces, blank lines)."""
    sentence = "the big red dog sees the small cat."
    limit = translator.max_source_tokens
    separators = [("  ", "\n\n", " ")[i % 3] for i in range(limit // 8 + 1)]
    long_text = "".join(sentence + sep for sep in separators) + sentence
    assert len(translator.tokenizer(long_text)["input_ids"]) > limit
    [result] = translator.translate([long_text], beam_size=1)
    [single] = translator.translate([sentence], beam_size=1)
    assert not result.truncated and single.text
    assert result.text == "".join(single.text + sep for sep in separators) + single.text


def test_over_long_sentence_is_truncated_with_a_flag_or_rejected(translator: Translator) -> None:
    words = "the cat " * translator.max_source_tokens
    [result] = translator.translate([words], beam_size=1, max_length=5)
    assert result.truncated and result.source_tokens == translator.max_source_tokens
    with pytest.raises(ValueError, match="more than 64 tokens"):
        translator.translate([words], on_too_long="error")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"beam_size": 0}, "beam_size must be at least 1"),
    ({"beam_size": 2, "num_hypotheses": 3}, "num_hypotheses must be between 1 and beam_size"),
    ({"banned_ids": (3, -1)}, "banned_ids must be token ids"),
])
def test_bad_options_name_the_field(translator: Translator, kwargs: dict[str, object],
                                    message: str) -> None:
    with pytest.raises(ValueError, match=message):
        translator.translate(["fish."], **kwargs)  # type: ignore[arg-type]


def test_cpu_provider_and_cuda_fallback(trained_bundle: Path, caplog: pytest.LogCaptureFixture
                                        ) -> None:
    if CUDA in onnxruntime.get_available_providers():  # a GPU machine: CUDA is used
        assert Translator.load(trained_bundle, require_gpu=True).provider == CUDA
        return
    assert Translator.load(trained_bundle).provider == "CPUExecutionProvider"
    with caplog.at_level(logging.WARNING):
        fallback = Translator.load(trained_bundle, providers=[CUDA, "CPUExecutionProvider"])
    assert fallback.provider == "CPUExecutionProvider"
    assert "CUDA was requested" in caplog.text
    with pytest.raises(ProviderError, match="CUDA was requested"):
        Translator.load(trained_bundle, providers=[CUDA, "CPUExecutionProvider"],
                        require_gpu=True)


def spinning(session: onnxruntime.InferenceSession) -> str:
    """The session's ``session.intra_op.allow_spinning`` entry."""
    return session.get_session_options().get_session_config_entry(
        "session.intra_op.allow_spinning")


@pytest.mark.parametrize(("given", "spins"), [(None, "1"), (False, "0"), (True, "1")])
def test_only_the_decoder_may_spin(trained_bundle: Path, given: bool | None, spins: str) -> None:
    loaded = (Translator.load(trained_bundle) if given is None  # spinning by default
              else Translator.load(trained_bundle, decoder_spinning=given))
    assert spinning(loaded.model.decoder) == spins
    assert spinning(loaded.model.encoder) == "0"


def test_cli_translates_lines_in_order(trained_bundle: Path) -> None:
    import subprocess
    import sys

    lines = ["the cat eats fish.", "", "the dog."]
    result = subprocess.run([sys.executable, "-m", "inference", "translate", "--bundle",
                             str(trained_bundle), "--beam", "2"], input="\n".join(lines) + "\n",
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout.split("\n")
    assert len(out) == 4 and out[1] == "" and out[0] and out[2]
    translator = Translator.load(trained_bundle)
    assert out[0] == translator.translate([lines[0]], beam_size=2)[0].text


def test_cli_names_a_broken_bundle(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "inference", "translate", "--bundle",
                             str(tmp_path)], input="x\n", capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "model.json is missing" in result.stderr
