"""Text as people write it, through HTTP with the shipped ``models/transformer-en-fr``: the
golden English texts come back with each sentence replaced by its own translation and every
other byte unchanged; the stream concatenates to the same text; HTML keeps its markup."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.settings import Settings
from tests.inference.test_text import GOLDEN, replace_in_order
from tests.service.api.fakes import wait_ready
from tests.service.api.test_stream import parse_sse

SHIPPED = Path(__file__).resolve().parents[3] / "models" / "transformer-en-fr"
FILES = ("model.json", "encoder.onnx", "decoder.onnx", "tokenizer.json",
         "tokenizer_config.json")
ENGLISH = [(text, sentences) for language, text, sentences in GOLDEN if language == "en"]
EN_FR = {"source_lang": "en", "target_lang": "fr", "beam_size": 1}
TAG = re.compile(r"<[^>]*>")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The shipped fp32 bundle alone (its int8 variant left out), linked, not copied."""
    bundle = tmp_path_factory.mktemp("shipped") / SHIPPED.name
    bundle.mkdir()
    for name in FILES:
        (bundle / name).symlink_to(SHIPPED / name)
    settings = Settings(models_dir=bundle.parent, threads=1, max_wait_ms=5)
    with TestClient(create_app(settings)) as started:
        wait_ready(started)
        yield started


def translations(client: TestClient, texts: list[str]) -> list[str]:
    response = client.post("/translate", json={"text": texts, **EN_FR})
    assert response.status_code == 200, response.text
    return [t["text"] for t in response.json()["translations"]]


@pytest.mark.slow
def test_golden_texts_keep_every_byte_outside_the_sentences(client: TestClient) -> None:
    sentences = [s for _, text_sentences in ENGLISH for s in text_sentences]
    alone = dict(zip(sentences, translations(client, sentences), strict=True))
    assert all(alone.values()) and all("\n" not in t for t in alone.values())
    texts = [text for text, _ in ENGLISH]
    for text, (_, text_sentences), got in zip(texts, ENGLISH, translations(client, texts),
                                              strict=True):
        assert got == replace_in_order(text, text_sentences, alone.__getitem__), text
        assert got.count("\n") == text.count("\n")


@pytest.mark.slow
def test_stream_concatenates_to_the_translate_answer(client: TestClient) -> None:
    texts = [text for text, _ in ENGLISH[:3]]
    response = client.post("/translate/stream", json={"text": texts, **EN_FR})
    assert response.status_code == 200, response.text
    events = parse_sse(response.text)
    plain = translations(client, texts)
    for index, text in enumerate(texts):
        mine = [data for name, data in events if name == "sentence"
                and data["text_index"] == index]
        assert "".join(s["source"] for s in mine) == text
        assert "".join(s["text"] for s in mine) == plain[index]
    assert events[-1] == ("done", {**events[-1][1], "translations": plain})


@pytest.mark.slow
def test_html_keeps_its_markup_and_layout(client: TestClient) -> None:
    document = ("<h1>The cat</h1>\n\n<p>He went to Washington. He met Dr. Jones.</p>\n"
                "<pre>Keep. This.</pre>\n<p>The dog <b>eats</b> fish.</p>\n")
    response = client.post("/translate", json={"text": document, "format": "html", **EN_FR})
    assert response.status_code == 200, response.text
    got = response.json()["translations"][0]["text"]
    assert TAG.findall(got) == TAG.findall(document)
    runs = list(zip(TAG.split(document), TAG.split(got), strict=True))
    for sent, back in runs:
        if not any(char.isalpha() for char in sent) or sent == "Keep. This.":
            assert back == sent
    # every other run is its translation alone (the Bible-domain model may give "" for a
    # lone word such as "eats"), with its outer spaces kept
    one_sentence = [(sent, back) for sent, back in runs
                    if sent.strip() in ("The cat", "The dog", "eats", "fish.")]
    assert len(one_sentence) == 4
    alone = translations(client, [sent.strip() for sent, _ in one_sentence])
    for (sent, back), expected in zip(one_sentence, alone, strict=True):
        lead, trail = sent[: len(sent) - len(sent.lstrip())], sent[len(sent.rstrip()):]
        assert back == f"{lead}{html.escape(expected, quote=False)}{trail}" != sent
    first, second = translations(client, ["He went to Washington.", "He met Dr. Jones."])
    assert f"<p>{html.escape(first + ' ' + second, quote=False)}</p>" in got
