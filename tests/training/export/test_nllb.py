"""NLLB-200 (``M2M100ForConditionalGeneration`` with its tokenizers-backed tokenizer and
``fra_Latn`` codes) exported and served: every language recorded, codes mapped to ISO 639-1
with the full code accepted, greedy = ``generate(forced_bos_token_id)``, beam 4 >= 98 %, two
targets in a batch, any pair over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from transformers import AutoTokenizer
from transformers.models.nllb.tokenization_nllb import FAIRSEQ_LANGUAGE_CODES

from inference.bundle import read_manifest
from inference.translator import Translator
from service.api.app import create_app
from service.api.settings import Settings
from tests.checkpoints import generate_forced, sample_sentences
from tests.service.api.fakes import copy_bundle, wait_ready

LIMIT = 12  # generated tokens, the forced language token included


def generate_for(model_dir: Path, sources: list[list[int]], targets: list[str], beams: int
                 ) -> list[list[int]]:
    """``generate`` forcing each row's target-language token first; it and eos stripped."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    forced = [int(tokenizer.convert_tokens_to_ids(t)) for t in targets]  # type: ignore[arg-type]
    return generate_forced(model_dir, sources, forced, beams=beams, limit=LIMIT)


def test_codes_map_to_iso_639_1_and_the_source_token_leads(nllb_bundle: Path,
                                                           nllb_dir: Path) -> None:
    manifest = read_manifest(nllb_bundle)
    tokenizer = AutoTokenizer.from_pretrained(str(nllb_dir))
    assert (manifest.source_lang, manifest.target_lang) == ("en", "fr")
    codes = manifest.metadata["language_codes"]
    assert (codes["en"], codes["fr"], codes["zh"], codes["zho_hant"]) == (
        "eng_Latn", "fra_Latn", "zho_Hans", "zho_Hant")  # one code per language, the first
    assert manifest.metadata["language_tokens"] == {
        served: tokenizer.convert_tokens_to_ids(codes.get(served, served))
        for served in manifest.metadata["language_tokens"]}
    assert len(manifest.metadata["language_tokens"]) == len(FAIRSEQ_LANGUAGE_CODES)
    assert manifest.metadata["target_prefix"] == [tokenizer.convert_tokens_to_ids("fra_Latn")]
    ids = Translator.load(nllb_bundle, threads=1).tokenizer(["the cat eats fish."])["input_ids"]
    assert ids[0][0] == tokenizer.convert_tokens_to_ids("eng_Latn")
    assert ids[0][-1] == tokenizer.eos_token_id


@pytest.mark.parametrize("beams", [1, 4])
def test_two_targets_in_one_batch_are_generates(nllb_bundle: Path, nllb_dir: Path,
                                                beams: int) -> None:
    translator = Translator.load(nllb_bundle, threads=1)
    sources = list(translator.tokenizer(sample_sentences(30))["input_ids"])
    targets = ["fra_Latn" if i % 2 else "deu_Latn" for i in range(len(sources))]
    tokenizer = AutoTokenizer.from_pretrained(str(nllb_dir))
    prefixes = [[int(tokenizer.convert_tokens_to_ids(t))] for t in targets]  # type: ignore[arg-type]
    expected = generate_for(nllb_dir, sources, targets, beams)
    got = translator.translate_ids(sources, beam_size=beams, max_length=LIMIT,
                                   target_prefix=prefixes)
    same = sum(a == b for a, b in zip(got, expected, strict=True))
    assert same >= (1.0 if beams == 1 else 0.98) * len(sources), f"{same} of {len(sources)}"


def test_http_accepts_the_full_codes_of_any_pair(nllb_bundle: Path, nllb_dir: Path,
                                                 tmp_path: Path) -> None:
    copy_bundle(nllb_bundle, tmp_path / "models", nllb_bundle.name)
    texts = sample_sentences(6)
    settings = Settings(models_dir=tmp_path / "models", threads=1, max_wait_ms=5,
                        cache_max_entries=0)  # every request decodes
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        replies = [client.post("/translate", json={
            "text": texts, "source_lang": src, "target_lang": tgt, "beam_size": 1,
            "max_length": LIMIT}) for src, tgt in (("fr", "de"), ("fra_Latn", "DEU_Latn"))]
        unknown = client.post("/translate", json={"text": texts, "source_lang": "fr",
                                                  "target_lang": "xyz_Latn"})
        libre = client.post("/libretranslate/translate", json={
            "q": texts, "source": "fra_Latn", "target": "deu_Latn"})
        plain = client.post("/translate", json={"text": texts, "source_lang": "fr",
                                                "target_lang": "de"})  # the same defaults
    error = unknown.json()["error"]
    assert unknown.status_code == 400 and error["field"] == "target_lang"
    assert len(error["details"]["languages"]) == len(FAIRSEQ_LANGUAGE_CODES) - 1
    assert {"de", "en"} <= set(error["details"]["languages"]) and "de, " in error["message"]
    tokenizer = AutoTokenizer.from_pretrained(str(nllb_dir), src_lang="fra_Latn")
    expected = tokenizer.batch_decode(
        generate_for(nllb_dir, tokenizer(texts)["input_ids"], ["deu_Latn"] * len(texts), 1),
        skip_special_tokens=True)
    for reply in replies:
        assert reply.status_code == 200, reply.text
        assert reply.json()["source_lang"] == "fr" and reply.json()["target_lang"] == "de"
        assert [t["text"] for t in reply.json()["translations"]] == expected
    assert libre.status_code == 200, libre.text
    assert libre.json()["translatedText"] == [t["text"] for t in plain.json()["translations"]]
