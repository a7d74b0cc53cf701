"""A table of hostile inputs on every endpoint, each with the exact status and error fields.

Rows send raw bytes (so malformed JSON, invalid UTF-8 and huge bodies reach the server as
they are) and name the status, the error ``code`` and the ``field`` expected; LibreTranslate
routes answer in their own error shape (``{"error": "<message>", "code", "field"}``).
Hostile but valid texts (right-to-left, combining marks, emoji, one repeated token, only
punctuation) must translate (200): the scripted engine answers ``fr:<text>`` between the text's
own leading and trailing whitespace; a text without a letter comes back as sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as default
from typing import Any
from urllib.parse import parse_qsl

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.settings import Settings
from tests.reliability.conftest import StartClient
from tests.service.api.fakes import FakeLoader, wait_ready, write_manifest

KEY = "reliability-key-0123456789"
EN_FR = {"source_lang": "en", "target_lang": "fr"}
JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
MAX_BODY = 1_000_000
NESTED = b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@dataclass(frozen=True)
class Row:
    """One hostile request and the answer expected."""

    method: str
    path: str
    content: bytes = b""
    status: int = 200
    code: str | None = None
    where: str | None = None
    headers: dict[str, str] = default(default_factory=lambda: dict(JSON))


def native(body: dict[str, Any], status: int, code: str | None = None,
           error_field: str | None = None) -> Row:
    """A ``POST /translate`` row with a JSON body (``EN_FR`` added unless it has a model)."""
    return Row("POST", "/translate", json.dumps({**EN_FR, **body}).encode(), status, code,
               error_field)


def libre(body: dict[str, Any] | bytes, status: int, code: str | None = None,
          error_field: str | None = None, headers: dict[str, str] | None = None) -> Row:
    """A ``POST /libretranslate/translate`` row (JSON unless ``headers`` say otherwise)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Row("POST", "/libretranslate/translate", content, status, code, error_field,
               headers or dict(JSON))


def raw(path: str, content: bytes, status: int, code: str, error_field: str | None = None
        ) -> Row:
    """A POST of raw bytes as JSON."""
    return Row("POST", path, content, status, code, error_field)


TEN_MB = b'{"text": "' + b"a" * 10_000_000 + b'"}'
ROWS = {
    # wrong types and missing fields
    "text-object": native({"text": {"a": 1}}, 422, "invalid_request", "text"),
    "text-list-of-numbers": native({"text": ["ok", 3]}, 422, "invalid_request", "text"),
    "text-missing": native({}, 422, "invalid_request", "text"),
    "beam-list": native({"text": "a", "beam_size": [4]}, 422, "invalid_request", "beam_size"),
    "beam-fraction": native({"text": "a", "beam_size": 1.5}, 422, "invalid_request",
                            "beam_size"),
    "scores-string": native({"text": "a", "return_scores": "maybe"}, 422, "invalid_request",
                            "return_scores"),
    "body-is-string": raw("/translate", b'"text"', 422, "invalid_request", "body"),
    "body-is-null": raw("/translate", b"null", 422, "invalid_request", "body"),
    # numbers out of range
    "beam-negative": native({"text": "a", "beam_size": -1}, 422, "invalid_request",
                            "beam_size"),
    "beam-zero": native({"text": "a", "beam_size": 0}, 422, "invalid_request", "beam_size"),
    "beam-huge": native({"text": "a", "beam_size": 10**30}, 422, "beam_size_too_large",
                        "beam_size"),
    "hypotheses-huge": native({"text": "a", "beam_size": 2, "num_hypotheses": 10**30}, 422,
                              "num_hypotheses_too_large", "num_hypotheses"),
    "max-length-huge": native({"text": "a", "max_length": 10**30}, 422,
                              "max_length_too_large", "max_length"),
    "length-penalty-huge": native({"text": "a", "length_penalty": 1e300}, 422,
                                  "invalid_request", "length_penalty"),
    "timeout-tiny": native({"text": "a", "timeout": 5e-324}, 422, "invalid_request", "timeout"),
    "timeout-zero": native({"text": "a", "timeout": 0}, 422, "invalid_request", "timeout"),
    "timeout-infinite": raw("/translate", b'{"text": "a", "source_lang": "en", "target_lang": '
                            b'"fr", "timeout": 1e999}', 422, "invalid_request", "timeout"),
    "length-penalty-nan": raw("/translate", b'{"text": "a", "source_lang": "en", '
                              b'"target_lang": "fr", "length_penalty": NaN}', 422,
                              "invalid_request", "length_penalty"),
    # sizes and shapes of the body
    "ten-megabytes": raw("/translate", TEN_MB, 413, "body_too_large"),
    "deeply-nested": raw("/translate", NESTED, 400, "bad_request"),
    "invalid-utf8": raw("/translate", b'{"text": "caf\xc3\x28", "source_lang": "en"}', 400,
                        "invalid_utf8"),
    "truncated-json": raw("/translate", b'{"text": "a', 400, "malformed_json", "body"),
    # characters
    "nul": native({"text": "a\u0000b"}, 422, "invalid_characters", "text"),
    "bell-in-list": native({"text": ["fine", "ring\u0007"]}, 422, "invalid_characters",
                           "text[1]"),
    "c1-control": native({"text": "a\u0085b"}, 422, "invalid_characters", "text"),
    "right-to-left": native({"text": "\u05e9\u05dc\u05d5\u05dd \u202e abc"}, 200),
    "combining": native({"text": "e\u0301\u0301\u0301 a\u0308"}, 200),
    "emoji": native({"text": "\U0001f600\U0001f469\u200d\U0001f4bb \U0001f1eb\U0001f1f7"}, 200),
    "one-token-repeated": native({"text": "the " * 1200}, 200),
    "only-punctuation": native({"text": "?!.,;:()[]{}--...\u2026\u00bf"}, 200),
    # routing fields
    "unknown-language": native({"text": "a", "target_lang": "xx"}, 400,
                               "unsupported_language_pair", "target_lang"),
    "unknown-model": native({"text": "a", "model": "../../etc/passwd"}, 400, "unknown_model",
                            "model"),
    "html-unreadable": native({"text": ["<p>a</p>", "<![ b"], "format": "html"}, 400,
                              "invalid_html", "text[1]"),
    "format-unknown": native({"text": "a", "format": "pdf"}, 422, "invalid_request", "format"),
    "empty-language": native({"text": "a", "source_lang": ""}, 422, "invalid_request",
                             "source_lang"),
    # LibreTranslate
    "lt-q-number": libre({"q": 5, "source": "en", "target": "fr"}, 400, "invalid_parameter",
                         "q"),
    "lt-source-missing": libre({"q": "a", "target": "fr"}, 400, "missing_parameter", "source"),
    "lt-target-missing": libre({"q": "a", "source": "en"}, 400, "missing_parameter", "target"),
    "lt-alternatives-negative": libre({"q": "a", "source": "en", "target": "fr",
                                       "alternatives": -1}, 400, "invalid_parameter",
                                      "alternatives"),
    "lt-alternatives-huge": libre({"q": "a", "source": "en", "target": "fr",
                                   "alternatives": 10**30}, 400, "invalid_parameter",
                                  "alternatives"),
    "lt-markdown": libre({"q": "*a*", "source": "en", "target": "fr", "format": "markdown"},
                         400, "unsupported_format", "format"),
    "lt-html-unreadable": libre({"q": "a <![ b", "source": "en", "target": "fr",
                                 "format": "html"}, 400, "invalid_html", "q"),
    "lt-text-plain": libre(b"q=a", 415, "unsupported_media_type",
                           headers={"content-type": "text/plain"}),
    "lt-array-body": libre(b"[1]", 400, "malformed_json", "body"),
    "lt-invalid-utf8": libre(b'{"q": "\xff", "target": "fr"}', 400, "invalid_utf8"),
    "lt-deeply-nested": libre(b'{"q": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400,
                              "malformed_json"),
    "lt-ten-megabytes": libre(TEN_MB, 413, "body_too_large"),
    "lt-nul-in-form": libre(b"q=a%00b&source=en&target=fr", 400, "invalid_characters", "q",
                            headers=dict(FORM)),
    "lt-emoji-raw-form": libre("q=\U0001f600 été&source=en&target=fr".encode(), 200,
                               headers=dict(FORM)),
    "lt-emoji-quoted-form": libre(b"q=%F0%9F%98%80&source=en&target=fr", 200,
                                  headers=dict(FORM)),
    "lt-invalid-utf8-form": libre(b"q=%FF&source=en&target=fr", 400, "invalid_utf8",
                                  headers=dict(FORM)),
    # GET endpoints
    "get-translate": Row("GET", "/translate", status=405, code="method_not_allowed"),
    "post-models": Row("POST", "/models", b"{}", 405, "method_not_allowed"),
    "unknown-path": Row("GET", "/../../etc/passwd", status=404, code="not_found"),
    "models-junk-query": Row("GET", "/models?x=%00%ff&x=" + "a" * 4000, status=200),
    "languages-with-body": Row("GET", "/libretranslate/languages", b"\xff" * 100, 200),
    "ready-junk-query": Row("GET", "/health/ready?deep=" + "[" * 1000, status=200),
}


def error_fields(response: Any, path: str) -> tuple[str, str | None]:
    """``(code, field)`` of an error body, in either shape; never a traceback."""
    assert "Traceback" not in response.text
    body = response.json()
    if path.startswith("/libretranslate/"):
        assert isinstance(body["error"], str) and body["error"]
        return body["code"], body.get("field")
    assert set(body) == {"error"} and body["error"]["message"]
    return body["error"]["code"], body["error"].get("field")


def scripted(text: str) -> str:
    """The scripted engine's answer for a one-sentence text."""
    core = text.strip()
    if not any(char.isalpha() for char in core):
        return text
    start = text.index(core)
    return f"{text[:start]}fr:{core}{text[start + len(core):]}"


@pytest.fixture(scope="module")
def module_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One started app for the whole table (the rows do not change its state)."""
    models = tmp_path_factory.mktemp("bad-input")
    write_manifest(models / "en-fr")
    app = create_app(Settings(models_dir=models, max_body_bytes=MAX_BODY), loader=FakeLoader())
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_hostile_input(module_client: TestClient, row: Row) -> None:
    """Exact status, error code and field for every row; 200s translate every text."""
    response = module_client.request(row.method, row.path, content=row.content,
                                     headers=row.headers)
    assert response.status_code == row.status, response.text[:500]
    if row.status >= 400:
        assert error_fields(response, row.path) == (row.code, row.where)
    elif row.path == "/translate":
        sent = json.loads(row.content)["text"]
        assert response.json()["translations"][0]["text"] == scripted(sent)
    elif row.path == "/libretranslate/translate":
        sent = dict(parse_qsl(row.content.decode()))["q"]
        assert response.json()["translatedText"] == scripted(sent)


KEY_ROWS = {
    "query-string": ("/translate?api_key=" + KEY, {}, "missing_api_key"),
    "cookie": ("/translate", {"cookie": f"api_key={KEY}"}, "missing_api_key"),
    "authorization-without-scheme": ("/translate", {"authorization": KEY}, "missing_api_key"),
    "basic-scheme": ("/translate", {"authorization": f"Basic {KEY}"}, "missing_api_key"),
    "wrong-header-name": ("/translate", {"x-api-token": KEY}, "missing_api_key"),
    "bearer-with-key-prefix": ("/translate", {"authorization": f"Bearer {KEY[:-1]}"},
                               "invalid_api_key"),
}


@pytest.mark.parametrize(("path", "headers", "code"), KEY_ROWS.values(), ids=KEY_ROWS.keys())
def test_api_key_in_the_wrong_place(start_client: StartClient, path: str,
                                    headers: dict[str, str], code: str) -> None:
    """A key anywhere but ``Authorization: Bearer``, ``X-API-Key`` (or LibreTranslate's
    ``api_key`` field) is not a key: 401 with a challenge."""
    client = start_client(api_keys=[KEY])
    body = {"text": "a", **EN_FR}
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 401, response.text
    assert error_fields(response, path)[0] == code
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_api_key_in_the_native_body_is_not_a_key(start_client: StartClient) -> None:
    """``api_key`` is a LibreTranslate field; in a native body the key check refuses first."""
    client = start_client(api_keys=[KEY])
    response = client.post("/translate", json={"text": "a", "api_key": KEY, **EN_FR})
    assert response.status_code == 401
    assert error_fields(response, "/translate") == ("missing_api_key", None)
