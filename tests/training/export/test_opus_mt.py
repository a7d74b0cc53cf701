"""An OPUS-MT checkpoint as downloaded (sentencepiece tokenizer, generation config) exported
and run by the serving engine: the same ids as ``generate`` with the checkpoint's generation
config (pad banned, eos forced at the length cap)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from inference.bundle import read_manifest
from inference.languages import LanguageError
from inference.options import DecodeOptions
from inference.translator import Translator
from tests.checkpoints import generate_ids, sample_sentences
from training.errors import run_cli
from training.export.__main__ import main as export_main

LIMIT = 40  # longer than any output of the tiny model: nothing is cut
CUT = 4  # shorter than most outputs


def sources_of(translator: Translator) -> list[list[int]]:
    """The sample sentences tokenized by the bundle's own (sentencepiece) tokenizer."""
    return list(translator.tokenizer(sample_sentences())["input_ids"])


def test_bundle_tokenizer_is_sentencepiece_marian(opus_mt_bundle: Path) -> None:
    translator = Translator.load(opus_mt_bundle, threads=1)
    assert type(translator.tokenizer).__name__ == "MarianTokenizer"
    assert {"source.spm", "target.spm", "vocab.json"} <= {p.name for p in opus_mt_bundle.iterdir()}


def test_greedy_ids_identical_to_generate(opus_mt_bundle: Path, opus_mt_dir: Path) -> None:
    translator = Translator.load(opus_mt_bundle, threads=1)
    sources = sources_of(translator)
    expected = generate_ids(opus_mt_dir, sources, num_beams=1, max_new_tokens=LIMIT)
    assert len({tuple(row) for row in expected}) > len(expected) // 2  # outputs vary by input
    assert translator.translate_ids(sources, beam_size=1, max_length=LIMIT) == expected


def test_beam_4_identical_on_98_percent(opus_mt_bundle: Path, opus_mt_dir: Path) -> None:
    translator = Translator.load(opus_mt_bundle, threads=1)
    sources = sources_of(translator)
    expected = generate_ids(opus_mt_dir, sources, num_beams=4, max_new_tokens=LIMIT)
    got = translator.translate_ids(sources, beam_size=4, max_length=LIMIT)
    same = sum(a == b for a, b in zip(got, expected, strict=True))
    assert same >= 0.98 * len(sources), f"{same} of {len(sources)} identical"


def test_generation_config_is_recorded(opus_mt_bundle: Path, opus_mt_dir: Path) -> None:
    pad = AutoTokenizer.from_pretrained(str(opus_mt_dir)).pad_token_id
    generation = read_manifest(opus_mt_bundle).metadata["generation"]
    assert generation == {"forced_eos": True, "banned_ids": [pad], "num_beams": 4,
                          "max_new_tokens": 47}  # generation_config.json: max_length 48
    translator = Translator.load(opus_mt_bundle, threads=1)
    options = translator.with_generation(DecodeOptions())
    assert options.max_length == 47  # the request gives no max_length
    assert options.banned_ids == (pad,) and options.forced_eos
    assert translator.with_generation(DecodeOptions(max_length=9)).max_length == 9


@pytest.mark.parametrize("beam", [1, 4])
def test_outputs_cut_by_max_length_are_generates(opus_mt_bundle: Path, opus_mt_dir: Path,
                                                 beam: int) -> None:
    translator = Translator.load(opus_mt_bundle, threads=1)
    sources = sources_of(translator)
    expected = generate_ids(opus_mt_dir, sources, num_beams=beam, max_new_tokens=CUT)
    cut = sum(len(row) == CUT - 1 for row in expected)  # eos forced in place of a 4th token
    assert cut > len(sources) // 2 and all(len(row) < CUT for row in expected)
    got = translator.translate_ids(sources, beam_size=beam, max_length=CUT)
    same = sum(a == b for a, b in zip(got, expected, strict=True))
    assert same >= (1.0 if beam == 1 else 0.98) * len(sources), f"{same} of {len(sources)}"


def test_languages_come_from_the_tokenizer_config(opus_mt_bundle: Path) -> None:
    manifest = read_manifest(opus_mt_bundle)
    assert (manifest.source_lang, manifest.target_lang) == ("en", "fr")
    assert "source_prefix" not in manifest.metadata


def opus_targets_generated(model_dir: Path, texts: list[str], targets: list[str],
                           beams: int) -> list[str]:
    """``generate`` of a multi-target checkpoint with each text led by its target's
    ``>>xxx<<`` token (``fr``: ``>>fra<<``, ``es``: ``>>spa<<``), as text."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    token = {"fr": ">>fra<<", "es": ">>spa<<"}
    led = [f"{token[target]} {text}" for text, target in zip(texts, targets, strict=True)]
    ids = generate_ids(model_dir, tokenizer(led)["input_ids"], num_beams=beams,
                       max_new_tokens=LIMIT)
    return list(tokenizer.batch_decode(ids, skip_special_tokens=True))


def test_multi_target_model_gets_its_target_token(opus_mt_multi_bundle: Path,
                                                   opus_mt_multi_dir: Path) -> None:
    manifest = read_manifest(opus_mt_multi_bundle)
    tokenizer = AutoTokenizer.from_pretrained(str(opus_mt_multi_dir))
    assert (manifest.source_lang, manifest.target_lang) == ("en", "fr")  # "fra" in the config
    ids = {code: tokenizer.convert_tokens_to_ids(f">>{name}<<")
           for code, name in (("fr", "fra"), ("es", "spa"))}
    assert manifest.metadata["source_prefix"] == [ids["fr"]]
    assert manifest.metadata["target_tokens_in_source"] == ids
    translator = Translator.load(opus_mt_multi_bundle, threads=1)
    texts = sample_sentences(20)
    got = translator.translate(texts, beam_size=1, max_length=LIMIT)
    assert [t.text for t in got] == opus_targets_generated(opus_mt_multi_dir, texts,
                                                           ["fr"] * len(texts), beams=1)


@pytest.mark.parametrize("beams", [1, 4])
def test_multi_target_model_serves_each_target_in_one_batch(opus_mt_multi_bundle: Path,
                                                           opus_mt_multi_dir: Path,
                                                           beams: int) -> None:
    translator = Translator.load(opus_mt_multi_bundle, threads=1)
    assert sorted(translator.languages.pairs()) == [("en", "es"), ("en", "fr")]
    texts = sample_sentences(24)
    targets = ["es" if index % 3 else "fr" for index in range(len(texts))]
    got = [t.text for t in translator.translate(
        texts, beam_size=beams, max_length=LIMIT, pairs=[("en", t) for t in targets])]
    expected = opus_targets_generated(opus_mt_multi_dir, texts, targets, beams)
    same = sum(a == b for a, b in zip(got, expected, strict=True))
    assert same == len(texts) if beams == 1 else same >= 0.98 * len(texts)
    into_french = opus_targets_generated(opus_mt_multi_dir, texts, ["fr"] * len(texts), beams)
    differ = sum(a != b for a, b, t in zip(got, into_french, targets, strict=True) if t == "es")
    assert differ >= targets.count("es") // 2  # the target token changes the output
    with pytest.raises(LanguageError, match="target languages: es, fr"):
        translator.translate(texts[:1], pairs=[("en", "de")])


def test_a_target_the_model_lacks_is_refused_in_one_line(opus_mt_multi_dir: Path,
                                                         tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    assert run_cli(export_main, [str(opus_mt_multi_dir), str(tmp_path / "de"),
                                 "--tgt-lang", "de"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "--tgt-lang with one of: es, fr" in errors[0]
    assert not (tmp_path / "de").exists()
