"""An OPUS-MT checkpoint as downloaded (sentencepiece tokenizer, generation config) exported
and run by the serving engine: the same ids as ``generate``."""

from __future__ import annotations

from pathlib import Path

from service.inference.translator import Translator
from tests.checkpoints import generate_ids, sample_sentences

PLAIN = {"bad_words_ids": None, "forced_eos_token_id": None, "renormalize_logits": False}
LIMIT = 40  # longer than any output of the tiny model: nothing is cut


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
    expected = generate_ids(opus_mt_dir, sources, num_beams=1, max_new_tokens=LIMIT, **PLAIN)
    assert len({tuple(row) for row in expected}) > len(expected) // 2  # outputs vary by input
    assert translator.translate_ids(sources, beam_size=1, max_length=LIMIT) == expected


def test_beam_4_identical_on_98_percent(opus_mt_bundle: Path, opus_mt_dir: Path) -> None:
    translator = Translator.load(opus_mt_bundle, threads=1)
    sources = sources_of(translator)
    expected = generate_ids(opus_mt_dir, sources, num_beams=4, max_new_tokens=LIMIT, **PLAIN)
    got = translator.translate_ids(sources, beam_size=4, max_length=LIMIT)
    same = sum(a == b for a, b in zip(got, expected, strict=True))
    assert same >= 0.98 * len(sources), f"{same} of {len(sources)} identical"
