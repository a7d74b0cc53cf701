"""Text as people write it, through HTTP with scripted engines: every route that splits text
translates exactly the golden sentences and keeps every other byte (line breaks, blank lines,
spacing, leading and trailing whitespace); streamed events concatenate to the same text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.api.settings import Settings
from tests.inference.test_text import GOLDEN, IDS, replace_in_order
from tests.service.api.fakes import FakeLoader, MakeClient, error_of, write_manifest
from tests.service.api.test_stream import parse_sse

TO = {"en": "fr", "fr": "en"}  # a golden case's language -> the fake model's target
CASES = [case for case in GOLDEN if case[0] in TO]
CASE_IDS = [name for name, case in zip(IDS, GOLDEN, strict=True) if case[0] in TO]
ISSUE_TEXT = "Mr. Smith went to Washington. He met Dr. Jones.\n\nNew paragraph here."


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """``en-fr`` and ``fr-en``."""
    root = tmp_path / "models"
    write_manifest(root / "en-fr")
    write_manifest(root / "fr-en", src="fr", tgt="en")
    return root


def route(language: str) -> dict[str, str]:
    return {"source_lang": language, "target_lang": TO[language]}


def expected(text: str, sentences: list[str], target: str) -> str:
    """The fake engine's translation of ``text``: ``<target>:`` before each sentence."""
    return replace_in_order(text, sentences, lambda sentence: f"{target}:{sentence}")


def sentence_events(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    events = parse_sse(response.text)
    assert events[-1][0] == "done", events[-1]
    return [data for name, data in events if name == "sentence"]


def test_the_issue_example_keeps_its_paragraph_and_abbreviations(make_client: MakeClient,
                                                                 models_dir: Path) -> None:
    loader = FakeLoader()
    client = make_client(loader)
    engine = loader.engines[models_dir / "en-fr"]
    warmup = len(engine.calls)
    body = client.post("/translate", json={"text": ISSUE_TEXT, **route("en")}).json()
    assert body["translations"][0]["text"] == (
        "fr:Mr. Smith went to Washington. fr:He met Dr. Jones.\n\nfr:New paragraph here.")
    assert [texts for texts, _ in engine.calls[warmup:]] == [
        ["Mr. Smith went to Washington.", "He met Dr. Jones.", "New paragraph here."]]


@pytest.mark.parametrize(("language", "text", "sentences"), CASES, ids=CASE_IDS)
def test_translate_keeps_every_byte_outside_the_sentences(
        client: TestClient, language: str, text: str, sentences: list[str]) -> None:
    body = client.post("/translate", json={"text": [text, text.strip()], **route(language),
                                           "num_hypotheses": 2, "beam_size": 2}).json()
    whole, stripped = body["translations"]
    assert whole["text"] == expected(text, sentences, TO[language])
    assert stripped["text"] == expected(text.strip(), sentences, TO[language])
    assert [a["text"] for a in whole["alternatives"]] == [
        whole["text"], replace_in_order(text, sentences, lambda s: f"{TO[language]}:{s}#1")]
    assert whole["source_tokens"] == sum(len(s.split()) + 1 for s in sentences)


@pytest.mark.parametrize(("language", "text", "sentences"), CASES, ids=CASE_IDS)
def test_stream_events_concatenate_to_the_translate_answer(
        client: TestClient, language: str, text: str, sentences: list[str]) -> None:
    body = {"text": ["Intro.", text], **route(language)}
    streamed = sentence_events(client.post("/translate/stream", json=body))
    plain = client.post("/translate", json=body).json()["translations"]
    mine = [s for s in streamed if s["text_index"] == 1]
    assert len(mine) == len(sentences)
    assert "".join(s["source"] for s in mine) == text
    assert "".join(s["text"] for s in mine) == plain[1]["text"] == expected(
        text, sentences, TO[language])


def test_libretranslate_text_keeps_the_layout(client: TestClient) -> None:
    for language, text, sentences in CASES:
        response = client.post("/libretranslate/translate",
                               json={"q": [text], "source": language, "target": TO[language]})
        assert response.status_code == 200, response.text
        assert response.json()["translatedText"] == [expected(text, sentences, TO[language])]


HTML = ("<h1>Mr. Smith</h1>\n\n<p>He went to Washington. He met Dr. Jones.</p>\n"
        "<pre>Keep. This.</pre> <p>\n  Two <b>bold</b> words. Done!\n</p>")
HTML_FR = ("<h1>fr:Mr. Smith</h1>\n\n<p>fr:He went to Washington. fr:He met Dr. Jones.</p>\n"
           "<pre>Keep. This.</pre> <p>\n  fr:Two <b>fr:bold</b> fr:words. fr:Done!\n</p>")


@pytest.mark.parametrize("path", ["/translate", "/libretranslate/translate"])
def test_html_runs_are_cut_into_sentences_and_the_markup_kept(client: TestClient,
                                                               path: str) -> None:
    if path == "/translate":
        body = {"text": HTML, "format": "html", **route("en")}
        assert client.post(path, json=body).json()["translations"][0]["text"] == HTML_FR
    else:
        body = {"q": HTML, "format": "html", "source": "en", "target": "fr"}
        assert client.post(path, json=body).json()["translatedText"] == HTML_FR


def test_a_text_of_separators_and_numbers_comes_back_as_sent(client: TestClient) -> None:
    texts = ["\n\n", "  2024\n---  ", "3.14"]
    body = client.post("/translate", json={"text": texts, **route("en")}).json()
    assert [t["text"] for t in body["translations"]] == texts
    assert {t["finish_reason"] for t in body["translations"]} == {"empty"}
    streamed = sentence_events(client.post("/translate/stream", json={"text": texts,
                                                                      **route("en")}))
    assert [(s["source"], s["text"]) for s in streamed] == [(t, t) for t in texts]


@pytest.mark.parametrize("timeout", [5e-324, 0, 0.009, -1])
def test_a_timeout_below_the_minimum_is_a_422_naming_it(client: TestClient,
                                                         timeout: float) -> None:
    for path in ("/translate", "/translate/stream"):
        error = error_of(client.post(path, json={"text": "Hi.", "timeout": timeout,
                                                 **route("en")}), 422)
        assert error["field"] == "timeout" and "0.01" in str(error["message"])
    assert client.post("/translate", json={"text": "Hi.", "timeout": 0.01 * 500,
                                           **route("en")}).status_code == 200


def test_the_server_deadline_has_the_same_minimum(models_dir: Path) -> None:
    with pytest.raises(ValidationError, match=r"greater than or equal to 0\.01"):
        Settings(models_dir=models_dir, request_timeout_s=5e-324)
    assert Settings(models_dir=models_dir, request_timeout_s=0.01).request_timeout_s == 0.01
