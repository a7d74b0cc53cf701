"""One multilingual bundle (the tiny M2M100 and NLLB checkpoints, exported) serving many
language pairs over HTTP: concurrent requests into several languages share engine calls and
decoder steps and each equals ``generate`` with its ``forced_bos_token_id``; the pairs are
listed with their targets; an unknown language is refused naming the languages; LibreTranslate
honours the checkpoint's ``num_beams``; a stream goes into the requested language; a
multi-target OPUS-MT bundle serves each of its targets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Literal

import pytest
from fastapi.testclient import TestClient
from transformers import AutoTokenizer

from inference.languages import Pair
from service.api.app import create_app
from service.api.settings import Settings
from tests.checkpoints import sample_sentences
from tests.service.api.fakes import asgi_client, copy_bundle, error_of, wait_ready
from tests.service.api.recording import PairsPerBatch
from tests.service.api.test_libretranslate import libre_error
from tests.service.api.test_stream import parse_sse
from tests.training.export.test_m2m100 import LIMIT, generate_for
from tests.training.export.test_opus_mt import LIMIT as OPUS_LIMIT
from tests.training.export.test_opus_mt import opus_targets_generated

REQUESTS: tuple[Pair, ...] = (("en", "fr"), ("en", "de"), ("de", "es"))
Batching = Literal["request", "continuous"]
STEP_S = 0.05  # per decoder step: requests sent together overlap in the running loop


@pytest.fixture(scope="module")
def m2m100_models(m2m100_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the M2M100 bundle (exported for en -> fr)."""
    root = tmp_path_factory.mktemp("m2m100-served")
    copy_bundle(m2m100_bundle, root, m2m100_bundle.name)
    return root


@pytest.fixture(scope="module")
def m2m100_client(m2m100_models: Path) -> Any:
    with TestClient(create_app(Settings(models_dir=m2m100_models, threads=1))) as client:
        wait_ready(client)
        yield client


def generated_texts(model_dir: Path, texts: list[str], pair: Pair, beams: int) -> list[str]:
    """What ``generate`` gives for ``texts`` from ``pair[0]`` into ``pair[1]``, as text."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), src_lang=pair[0])
    ids = generate_for(model_dir, tokenizer(texts)["input_ids"], [pair[1]] * len(texts), beams)
    return list(tokenizer.batch_decode(ids, skip_special_tokens=True))


@pytest.mark.parametrize("batching", ["request", "continuous"])
@pytest.mark.parametrize("beams", [1, 4])
def test_requests_into_several_languages_share_batches_and_are_generates(
        m2m100_models: Path, m2m100_dir: Path, batching: Batching, beams: int) -> None:
    texts = sample_sentences(30)
    chunks = {pair: texts[index::len(REQUESTS)] for index, pair in enumerate(REQUESTS)}
    record = PairsPerBatch(step_s=STEP_S)
    # request-level: the first request waits up to 300 ms for company
    settings = Settings(models_dir=m2m100_models, threads=1, batching=batching,
                        max_wait_ms=300)
    app = create_app(settings, loader=record)

    async def run() -> list[Any]:
        async with asgi_client(app) as client:
            return list(await asyncio.gather(*(client.post("/translate", json={
                "text": chunk, "source_lang": source, "target_lang": target,
                "beam_size": beams, "max_length": LIMIT})
                for (source, target), chunk in chunks.items())))

    replies = asyncio.run(run())
    assert record.widest() == set(REQUESTS)  # one engine call or decoder step held all three
    same = 0
    for reply, (pair, chunk) in zip(replies, chunks.items(), strict=True):
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert (body["source_lang"], body["target_lang"]) == pair
        got = [translation["text"] for translation in body["translations"]]
        same += sum(a == b for a, b in zip(
            got, generated_texts(m2m100_dir, chunk, pair, beams), strict=True))
    assert same >= (1.0 if beams == 1 else 0.98) * len(texts), f"{same} of {len(texts)}"
    first, chunk = REQUESTS[0], chunks[REQUESTS[0]]  # the forced token decides the output
    assert generated_texts(m2m100_dir, chunk, first, beams) != generated_texts(
        m2m100_dir, chunk, (first[0], "de"), beams)


def test_models_and_languages_list_every_pair_with_its_targets(
        m2m100_client: TestClient, m2m100_dir: Path) -> None:
    codes = sorted(AutoTokenizer.from_pretrained(str(m2m100_dir)).lang_code_to_id)
    (model,) = m2m100_client.get("/models").json()["models"]
    assert model["default"] and (model["source_lang"], model["target_lang"]) == ("en", "fr")
    assert [entry["code"] for entry in model["languages"]] == codes
    for entry in model["languages"]:
        assert entry["targets"] == [code for code in codes if code != entry["code"]]
    libre = m2m100_client.get("/libretranslate/languages").json()
    assert [(entry["code"], entry["targets"]) for entry in libre] == [
        (entry["code"], entry["targets"]) for entry in model["languages"]]
    assert {"code": "de", "name": "German", "targets": model["languages"][
        codes.index("de")]["targets"]} in libre


def test_an_unknown_language_is_refused_naming_the_languages(m2m100_client: TestClient,
                                                             m2m100_dir: Path) -> None:
    codes = sorted(AutoTokenizer.from_pretrained(str(m2m100_dir)).lang_code_to_id)
    native = {"text": "the cat.", "source_lang": "en", "target_lang": "tlh"}
    error = error_of(m2m100_client.post("/translate", json=native), 400)
    assert (error["code"], error["field"]) == ("unsupported_language_pair", "target_lang")
    assert error["details"]["languages"] == [code for code in codes if code != "en"]
    assert "en is translated into: af, am, ar," in error["message"]
    error = error_of(m2m100_client.post("/translate", json={**native, "source_lang": "tlh",
                                                            "target_lang": "fr"}), 400)
    assert (error["field"], error["details"]["languages"]) == ("source_lang", codes)
    for stream in (False, True):
        route = "/translate/stream" if stream else "/translate"
        mismatch = m2m100_client.post(route, json={"text": "x", "model": "m2m100-en-fr",
                                                   "target_lang": "tlh"})
        error = error_of(mismatch, 422)
        assert (error["code"], error["field"]) == ("model_language_mismatch", "target_lang")
    libre = libre_error(m2m100_client.post("/libretranslate/translate", json={
        "q": "the cat.", "source": "en", "target": "tlh"}), 400)
    assert (libre["error"], libre["field"]) == ("tlh is not supported", "target")
    assert libre["details"] == {"languages": codes}


def test_libretranslate_uses_the_checkpoints_num_beams(m2m100_bundle: Path, m2m100_dir: Path,
                                                       tmp_path: Path) -> None:
    bundle = copy_bundle(m2m100_bundle, tmp_path, m2m100_bundle.name)
    raw = json.loads((bundle / "model.json").read_text())  # not checksummed: safe to edit
    raw["metadata"]["generation"] = {**raw["metadata"].get("generation", {}), "num_beams": 1}
    (bundle / "model.json").write_text(json.dumps(raw))
    texts = sample_sentences(30)
    body = {"text": texts, "source_lang": "en", "target_lang": "de"}
    settings = Settings(models_dir=tmp_path, threads=1, cache_max_entries=0)  # all decode
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        libre = client.post("/libretranslate/translate", json={"q": texts, "source": "en",
                                                               "target": "de"})
        greedy, beam = (client.post("/translate", json={**body, "beam_size": beams}).json()
                        for beams in (1, 4))
    assert libre.status_code == 200, libre.text
    assert libre.json()["translatedText"] == [t["text"] for t in greedy["translations"]]
    assert libre.json()["translatedText"] != [t["text"] for t in beam["translations"]]


def test_a_stream_goes_into_the_requested_language(m2m100_client: TestClient) -> None:
    body = {"text": "the cat eats fish. the dog sees the red cat.", "source_lang": "en",
            "target_lang": "es", "beam_size": 1}
    response = m2m100_client.post("/translate/stream", json=body)
    assert response.status_code == 200, response.text
    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["start", "sentence", "sentence", "done"]
    start, done = events[0][1], events[-1][1]
    assert (start["target_lang"], done["target_lang"]) == ("es", "es")
    for target in ("es", "fr"):
        answer = m2m100_client.post("/translate", json={**body, "target_lang": target}).json()
        same = done["translations"] == [answer["translations"][0]["text"]]
        assert same == (target == "es")


@pytest.mark.parametrize("batching", ["request", "continuous"])
def test_a_multi_target_opus_mt_bundle_serves_each_target(
        opus_mt_multi_bundle: Path, opus_mt_multi_dir: Path, tmp_path: Path,
        batching: Batching) -> None:
    copy_bundle(opus_mt_multi_bundle, tmp_path, opus_mt_multi_bundle.name)
    texts = sample_sentences(12)
    settings = Settings(models_dir=tmp_path, threads=1, batching=batching)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        (model,) = client.get("/models").json()["models"]
        assert [(e["code"], e.get("targets")) for e in model["languages"]
                if e.get("targets")] == [("en", ["es", "fr"])]
        for target in ("es", "fr"):
            reply = client.post("/translate", json={
                "text": texts, "source_lang": "en", "target_lang": target, "beam_size": 1,
                "max_length": OPUS_LIMIT})
            assert reply.status_code == 200, reply.text
            assert [t["text"] for t in reply.json()["translations"]] == opus_targets_generated(
                opus_mt_multi_dir, texts, [target] * len(texts), beams=1)
        libre = libre_error(client.post("/libretranslate/translate", json={
            "q": "the cat.", "source": "en", "target": "de"}), 400)
    assert libre["details"] == {"languages": ["en", "es", "fr"]}
