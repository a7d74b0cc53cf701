"""The bad-input table of every LibreTranslate route: LibreTranslate's status code and error
text, with our code and the field at fault beside it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.settings import Settings
from tests.service.api.fakes import FakeLoader, wait_ready, write_manifest

KEY = "k"
LIMIT = 50  # max_total_chars of the table's server
FILE_LIMIT = 100  # max_file_bytes of the table's server
OK = {"q": "hello", "source": "en", "target": "fr", "api_key": KEY}


class Row(NamedTuple):
    """One request and the answer LibreTranslate would give."""

    path: str
    request: dict[str, Any]
    status: int
    error: str
    field: str | None


def translate(status: int, error: str, field: str | None, **fields: Any) -> Row:
    return Row("/translate", {"json": {**OK, **fields}}, status, error, field)


def detect(status: int, error: str, field: str | None, **fields: Any) -> Row:
    return Row("/detect", {"data": {"q": "hello", "api_key": KEY, **fields}}, status, error,
               field)


def upload(status: int, error: str, field: str | None, name: str = "a.txt",
           content: bytes = b"hello", **fields: Any) -> Row:
    form = {"source": "en", "target": "fr", "api_key": KEY, **fields}
    return Row("/translate_file", {"data": form, "files": {"file": (name, content)}}, status,
               error, field)


MISSING_KEY = "Please contact the server operator to get an API key"
ROWS = {
    "translate-missing-q": translate(400, "Invalid request: missing q parameter", "q", q=None),
    "translate-empty-q": translate(400, "Invalid request: missing q parameter", "q", q=""),
    "translate-empty-list": translate(400, "Invalid request: missing q parameter", "q", q=[]),
    "translate-missing-source": translate(400, "Invalid request: missing source parameter",
                                          "source", source=None),
    "translate-over-char-limit": translate(
        400, f"Invalid request: request ({LIMIT + 1}) exceeds text limit ({LIMIT})", "q",
        q="x" * (LIMIT + 1)),
    "translate-list-over-char-limit": translate(
        400, f"Invalid request: request ({LIMIT + 2}) exceeds text limit ({LIMIT})", "q",
        q=["x" * 26, "y" * 26]),
    "translate-unknown-source": translate(400, "zz is not supported", "source", source="zz"),
    "translate-unknown-target": translate(400, "zz is not supported", "target", target="zz"),
    "translate-no-such-pair": translate(
        400, "English (en) is not available as a target language from French (fr)", "target",
        source="fr", target="en"),
    "translate-bad-format": translate(400, "xml format is not supported", "format",
                                      format="xml"),
    "translate-missing-key": translate(400, MISSING_KEY, "api_key", api_key=None),
    "translate-bad-key": translate(403, "Invalid API key", "api_key", api_key="wrong"),
    "detect-missing-q": detect(400, "Invalid request: missing q parameter", "q", q=""),
    "detect-over-char-limit": detect(
        400, f"Invalid request: request ({LIMIT + 1}) exceeds text limit ({LIMIT})", "q",
        q="x" * (LIMIT + 1)),
    "detect-missing-key": detect(400, MISSING_KEY, "api_key", api_key=""),
    "detect-bad-key": detect(403, "Invalid API key", "api_key", api_key="wrong"),
    "file-missing-file": Row("/translate_file", {"data": {"source": "en", "target": "fr",
                                                          "api_key": KEY}},
                             400, "Invalid request: missing file parameter", "file"),
    "file-missing-target": upload(400, "Invalid request: missing target parameter", "target",
                                  target=""),
    "file-unknown-language": upload(400, "zz is not supported", "source", source="zz"),
    "file-wrong-type": upload(400, "Invalid request: file format not supported (supported: "
                              ".txt, .html, .htm)", "file", name="a.pdf"),
    "file-oversized": upload(400, f"Invalid request: file larger than {FILE_LIMIT} bytes",
                             "file", content=b"x" * (FILE_LIMIT + 1)),
    "file-not-utf8": upload(400, "Invalid request: the file is not UTF-8 text", "file",
                            content=b"\xff\xfe\xfa"),
    "file-bad-key": upload(403, "Invalid API key", "api_key", api_key="wrong"),
    "suggest-off": Row("/suggest", {"json": {"q": "a", "s": "b", "source": "en",
                                             "target": "fr"}},
                       403, "Suggestions are disabled on this server.", None),
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One started app with a key, a small character limit and a small file limit."""
    models = tmp_path_factory.mktemp("lt-bad-input")
    write_manifest(models / "en-fr")
    write_manifest(models / "fr-de", src="fr", tgt="de")
    settings = Settings(models_dir=models, api_keys=KEY,  # type: ignore[arg-type]  # parsed
                        max_total_chars=LIMIT, max_file_bytes=FILE_LIMIT)
    with TestClient(create_app(settings, loader=FakeLoader()),
                    raise_server_exceptions=False) as started:
        wait_ready(started)
        yield started


def without_nones(request: dict[str, Any]) -> dict[str, Any]:
    """Fields whose value is None are left out of the request."""
    return {part: {k: v for k, v in value.items() if v is not None}
            if part in ("json", "data") else value for part, value in request.items()}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_bad_input(client: TestClient, row: Row) -> None:
    response = client.post(f"/libretranslate{row.path}", **without_nones(row.request))
    assert response.status_code == row.status, response.text
    body = response.json()
    assert body["error"] == row.error
    assert body.get("field") == row.field and body["request_id"]


def test_the_good_requests_of_the_table_pass(client: TestClient) -> None:
    assert client.post("/libretranslate/translate", json=OK).json() == {
        "translatedText": "fr:hello"}
    assert client.post("/libretranslate/translate_file", data={**OK}, files={
        "file": ("a.txt", b"hello")}).status_code == 200


def test_unknown_download_and_oversized_body(client: TestClient) -> None:
    gone = client.get("/libretranslate/download_file/nothing-here.a.txt")
    assert gone.status_code == 400 and gone.json()["error"] == "Invalid filename"
    huge = client.post("/libretranslate/translate", json={**OK, "q": "x" * 2_000_000})
    assert huge.status_code == 413 and huge.json()["code"] == "body_too_large"
