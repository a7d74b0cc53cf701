"""M2M100 (``M2M100ForConditionalGeneration`` with ``M2M100Tokenizer``) exported and served:
parity with PyTorch, the source-language token placed by the tokenizer, the target language
forced as the first generated token (``generate``'s ``forced_bos_token_id``), several target
languages in one batch."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from transformers import AutoTokenizer

from inference.bundle import read_manifest
from inference.translator import Translator
from service.api.app import create_app
from service.api.settings import Settings
from tests.checkpoints import generate_forced, sample_sentences
from tests.service.api.fakes import copy_bundle, wait_ready
from training.errors import run_cli
from training.export.__main__ import main as export_main

LIMIT = 12  # generated tokens, the forced language token included
TARGETS = ("fr", "de", "es")


def generate_for(model_dir: Path, sources: list[list[int]], targets: list[str], beams: int
                 ) -> list[list[int]]:
    """``generate`` forcing each row's target-language token first; it and eos stripped."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    forced = [tokenizer.get_lang_id(t) for t in targets]
    return generate_forced(model_dir, sources, forced, beams=beams, limit=LIMIT)


def test_bundle_records_the_pair_and_parity(m2m100_bundle: Path, m2m100_dir: Path) -> None:
    manifest = read_manifest(m2m100_bundle)
    tokenizer = AutoTokenizer.from_pretrained(str(m2m100_dir))
    assert (manifest.source_lang, manifest.target_lang) == ("en", "fr")
    assert manifest.metadata["target_prefix"] == [tokenizer.get_lang_id("fr")]
    diffs = manifest.metadata["parity_max_abs_diff"]  # encoder outputs and step log-probs
    assert diffs["encoder"] <= 1e-4 and diffs["decoder_steps"] <= 1e-4
    translator = Translator.load(m2m100_bundle, threads=1)
    ids = translator.tokenizer(["the cat eats fish."])["input_ids"][0]
    assert ids[0] == tokenizer.get_lang_id("en") and ids[-1] == tokenizer.eos_token_id


def test_bundle_records_every_language_and_sources_carry_the_requested_one(
        m2m100_bundle: Path, m2m100_dir: Path) -> None:
    manifest = read_manifest(m2m100_bundle)
    tokenizer = AutoTokenizer.from_pretrained(str(m2m100_dir))
    assert manifest.metadata["language_tokens"] == {
        code: tokenizer.get_lang_id(code) for code in tokenizer.lang_code_to_id}
    assert manifest.metadata["source_language_index"] == 0
    texts = sample_sentences(6)
    translator = Translator.load(m2m100_bundle, threads=1)
    for source in ("en", "de"):
        checkpoint = AutoTokenizer.from_pretrained(str(m2m100_dir), src_lang=source)
        routes = [(source, "fr")] * len(texts)
        assert translator.prepare(texts, routes=routes).sources == checkpoint(
            texts)["input_ids"]


@pytest.mark.parametrize("beams", [1, 4])
def test_several_target_languages_in_one_batch_are_generates(
        m2m100_bundle: Path, m2m100_dir: Path, beams: int) -> None:
    translator = Translator.load(m2m100_bundle, threads=1)
    sources = list(translator.tokenizer(sample_sentences(30))["input_ids"])
    targets = [TARGETS[i % len(TARGETS)] for i in range(len(sources))]
    tokenizer = AutoTokenizer.from_pretrained(str(m2m100_dir))
    prefixes = [[tokenizer.get_lang_id(t)] for t in targets]
    expected = generate_for(m2m100_dir, sources, targets, beams)
    got = translator.translate_ids(sources, beam_size=beams, max_length=LIMIT,
                                   target_prefix=prefixes)
    same = sum(a == b for a, b in zip(got, expected, strict=True))
    assert same >= (1.0 if beams == 1 else 0.98) * len(sources), f"{same} of {len(sources)}"
    default = translator.translate_ids(sources, beam_size=beams, max_length=LIMIT)
    french = [t == "fr" for t in targets]  # the bundle's target: forced without a prefix
    assert [d for d, f in zip(default, french, strict=True) if f] == [
        g for g, f in zip(got, french, strict=True) if f]


def test_http_translation_is_generates(m2m100_bundle: Path, m2m100_dir: Path,
                                       tmp_path: Path) -> None:
    copy_bundle(m2m100_bundle, tmp_path / "models", m2m100_bundle.name)
    texts = sample_sentences(8)
    settings = Settings(models_dir=tmp_path / "models", threads=1, max_wait_ms=5)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        reply = client.post("/translate", json={"text": texts, "source_lang": "en",
                                                "target_lang": "fr", "beam_size": 1,
                                                "max_length": LIMIT})
    assert reply.status_code == 200, reply.text
    tokenizer = AutoTokenizer.from_pretrained(str(m2m100_dir))
    sources = tokenizer(texts)["input_ids"]
    expected = generate_for(m2m100_dir, sources, ["fr"] * len(texts), 1)
    assert [t["text"] for t in reply.json()["translations"]] == tokenizer.batch_decode(
        expected, skip_special_tokens=True)


def test_a_language_the_model_lacks_is_refused_in_one_line(
        m2m100_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(export_main, [str(m2m100_dir), str(tmp_path / "out"), "--src-lang", "en",
                                 "--tgt-lang", "tlh"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "pass --tgt-lang with one of: af, am, ar," in errors[0]
    assert not (tmp_path / "out").exists()
