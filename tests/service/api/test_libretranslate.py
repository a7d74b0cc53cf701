"""LibreTranslate-shaped requests and responses under ``/libretranslate/``."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service.api.fakes import FakeLoader, MakeClient, Reply

URL = "/libretranslate/translate"


def libre_error(response: Reply, status: int) -> dict[str, object]:
    """LibreTranslate's error body: ``error`` is the message string."""
    assert response.status_code == status, response.text
    body: dict[str, object] = response.json()
    assert isinstance(body["error"], str) and "request_id" in body
    return body


@pytest.fixture
def fr_only(make_client: MakeClient, models_dir: Path) -> TestClient:
    """Only en->fr is served, so ``source=auto`` is unambiguous for ``fr``."""
    import shutil

    shutil.rmtree(models_dir / "en-de")
    return make_client()


def test_json_string_q(fr_only: TestClient) -> None:
    body = fr_only.post(URL, json={"q": "hello", "source": "en", "target": "fr",
                                   "format": "text"}).json()
    assert body == {"translatedText": "fr:hello"}


def test_form_encoded_auto_with_alternatives(fr_only: TestClient) -> None:
    response = fr_only.post(URL, data={"q": "hello", "source": "auto", "target": "fr",
                                       "alternatives": "2", "api_key": ""})
    assert response.status_code == 200
    assert response.json() == {"translatedText": "fr:hello",
                               "alternatives": ["fr:hello#1", "fr:hello#2"],
                               "detectedLanguage": {"confidence": 100.0, "language": "en"}}


def test_list_q_gives_lists(fr_only: TestClient) -> None:
    body = fr_only.post(URL, json={"q": ["a", "", "b"], "source": "auto", "target": "fr",
                                   "alternatives": 1}).json()
    assert body["translatedText"] == ["fr:a", "", "fr:b"]
    assert body["alternatives"] == [["fr:a#1"], [], ["fr:b#1"]]
    assert body["detectedLanguage"] == [{"confidence": 100.0, "language": "en"}] * 3
    form = fr_only.post(URL, data={"q": ["a", "b"], "source": "en", "target": "fr"}).json()
    assert form == {"translatedText": ["fr:a", "fr:b"]}


def test_html_keeps_markup_and_translates_text_in_one_batch(make_client: MakeClient,
                                                             models_dir: Path) -> None:
    loader = FakeLoader()
    client = make_client(loader)
    engine = loader.engines[models_dir / "en-fr"]
    before = len(engine.calls)
    page = '<p class="x">Good <b>day</b>!</p>\n<script>let a = "b";</script><p>Bye &amp; </p>'
    body = client.post(URL, json={"q": [page, "<br>", "<i>one</i>"], "source": "en",
                                  "target": "fr", "format": "html", "alternatives": 1}).json()
    assert body["translatedText"] == [
        '<p class="x">fr:Good <b>fr:day</b>!</p>\n<script>let a = "b";</script>'
        "<p>fr:Bye &amp; </p>", "<br>", "<i>fr:one</i>"]
    assert body["alternatives"] == [
        ['<p class="x">fr:Good#1 <b>fr:day#1</b>!</p>\n<script>let a = "b";</script>'
         "<p>fr:Bye &amp;#1 </p>"], [], ["<i>fr:one#1</i>"]]
    assert [text for texts, _ in engine.calls[before:] for text in texts] == [
        "Good", "day", "Bye &", "one"]


def test_html_without_text_skips_the_engine_and_bad_html_is_a_400(
        make_client: MakeClient, models_dir: Path) -> None:
    loader = FakeLoader()
    client = make_client(loader)
    before = len(loader.engines[models_dir / "en-fr"].calls)
    same = client.post(URL, json={"q": "<hr><!-- x -->", "source": "en", "target": "fr",
                                  "format": "html"}).json()
    assert same == {"translatedText": "<hr><!-- x -->"}
    assert len(loader.engines[models_dir / "en-fr"].calls) == before
    bad = libre_error(client.post(URL, json={"q": ["<p>ok</p>", "<![ x"], "source": "en",
                                             "target": "fr", "format": "html"}), 400)
    assert bad["code"] == "invalid_html" and bad["field"] == "q[1]"
    assert "line 1" in str(bad["error"]) and "format 'text'" in str(bad["error"])


def test_languages_shape(client: TestClient) -> None:
    languages = client.get("/libretranslate/languages").json()
    assert {"code": "en", "name": "English", "targets": ["de", "fr"]} in languages
    assert all(set(entry) == {"code", "name", "targets"} for entry in languages)


def test_errors_in_libretranslate_shape(client: TestClient) -> None:
    markdown = libre_error(client.post(URL, json={"q": "*x*", "source": "en", "target": "fr",
                                                  "format": "markdown"}), 400)
    assert markdown["code"] == "unsupported_format" and markdown["field"] == "format"
    assert markdown["error"] == "markdown format is not supported"
    auto = libre_error(client.post(URL, json={"q": "x", "source": "auto", "target": "xx"}), 400)
    assert auto["error"] == "xx is not supported" and auto["field"] == "target"
    missing = libre_error(client.post(URL, json={"q": "x", "source": "en"}), 400)
    assert missing["error"] == "Invalid request: missing target parameter"
    wrong = libre_error(client.post(URL, json={"q": 3, "source": "en", "target": "fr"}), 400)
    assert wrong["field"] == "q"
    bad_json = client.post(URL, content=b"{", headers={"content-type": "application/json"})
    assert libre_error(bad_json, 400)["error"] == "Invalid JSON format"
    text = client.post(URL, content=b"q=x", headers={"content-type": "text/plain"})
    assert libre_error(text, 415)["code"] == "unsupported_media_type"
    many = libre_error(client.post(URL, json={"q": "x", "source": "en", "target": "fr",
                                              "alternatives": 50}), 400)
    assert many["field"] == "alternatives" and many["limit"] == 7


def test_api_key_in_body_query_form_or_header(make_client: MakeClient) -> None:
    client = make_client(api_keys="k1")
    fields = {"q": "x", "source": "en", "target": "fr"}
    missing = libre_error(client.post(URL, json=fields), 400)
    assert missing["error"] == "Please contact the server operator to get an API key"
    assert client.post(URL, json={**fields, "api_key": "k1"}).status_code == 200
    assert client.post(URL, data={**fields, "api_key": "k1"}).status_code == 200
    assert client.post(URL, params={**fields, "api_key": "k1"}).status_code == 200
    assert client.post(URL, json=fields, headers={"X-API-Key": "k1"}).status_code == 200
    wrong = libre_error(client.post(URL, data={**fields, "api_key": "k2"}), 403)
    assert wrong["error"] == "Invalid API key"
    assert client.get("/libretranslate/languages").status_code == 200


def test_multipart_and_query_string_fields(fr_only: TestClient) -> None:
    multipart = fr_only.post(URL, files=[("q", (None, "a")), ("q", (None, "b")),
                                         ("source", (None, "en")), ("target", (None, "fr"))])
    assert multipart.headers["content-type"] == "application/json"
    assert multipart.json() == {"translatedText": ["fr:a", "fr:b"]}
    query = fr_only.post(URL, params={"q": "hello", "source": "en", "target": "fr"})
    assert query.json() == {"translatedText": "fr:hello"}
    body_wins = fr_only.post(URL + "?q=query", json={"q": "body", "source": "en",
                                                     "target": "fr"})
    assert body_wins.json() == {"translatedText": "fr:body"}
