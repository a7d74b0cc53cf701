"""LibreTranslate's other routes: detect, frontend settings, files, suggest, health, spec, and
``source=auto`` with real language detection."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service.api.fakes import MakeClient, write_manifest

BASE = "/libretranslate"
ENGLISH = "The sons of Japheth went out into the land and built cities there."
FRENCH = "Les fils de Japhet sortirent dans le pays et y bâtirent des villes."
GERMAN = "Die Söhne Japhets zogen in das Land hinaus und bauten dort Städte."


@pytest.fixture
def many(make_client: MakeClient, models_dir: Path) -> TestClient:
    """en->fr, en->de, fr->en and de->en: three source languages to tell apart."""
    write_manifest(models_dir / "fr-en", src="fr", tgt="en")
    write_manifest(models_dir / "de-en", src="de", tgt="en")
    return make_client()


def test_detect_ranks_the_served_sources_with_confidence(many: TestClient) -> None:
    for text, lang in ((ENGLISH, "en"), (FRENCH, "fr"), (GERMAN, "de")):
        found = many.post(f"{BASE}/detect", data={"q": text}).json()
        assert found[0]["language"] == lang
        assert {entry["language"] for entry in found} <= {"en", "fr", "de"}
        assert 50 < found[0]["confidence"] <= 100
        assert sum(entry["confidence"] for entry in found) == pytest.approx(100, abs=0.1)


def test_auto_detects_each_text_and_routes_it(many: TestClient) -> None:
    body = many.post(f"{BASE}/translate", json={"q": [FRENCH, GERMAN], "source": "auto",
                                                "target": "en"}).json()
    assert body["translatedText"] == [f"en:{FRENCH}", f"en:{GERMAN}"]
    assert [d["language"] for d in body["detectedLanguage"]] == ["fr", "de"]
    assert all(0 < d["confidence"] <= 100 for d in body["detectedLanguage"])
    single = many.post(f"{BASE}/translate", params={"q": FRENCH, "source": "auto",
                                                    "target": "en"}).json()
    assert single["detectedLanguage"]["language"] == "fr"


@pytest.mark.parametrize("source", [{}, {"source_lang": "auto"}, {"source_lang": "AUTO"}])
def test_native_translate_detects_an_omitted_or_auto_source(
        many: TestClient, source: dict[str, str]) -> None:
    body = many.post("/translate", json={"text": [FRENCH, "Merci."], "target_lang": "en",
                                         **source}).json()
    assert body["model"] == "fr-en" and body["source_lang"] == "fr"
    assert body["detected_language"]["language"] == "fr"
    assert 0.5 < body["detected_language"]["confidence"] <= 1
    assert body["translations"][0]["text"] == f"en:{FRENCH}"
    german = many.post("/translate", json={"text": GERMAN, "target_lang": "en"}).json()
    assert german["model"] == "de-en"
    given = many.post("/translate", json={"text": GERMAN, "source_lang": "de",
                                          "target_lang": "en"}).json()
    assert given["detected_language"] is None
    stream = many.post("/translate/stream", json={"text": FRENCH, "target_lang": "en"})
    assert '"model":"fr-en"' in stream.text.replace(" ", "")
    nowhere = many.post("/translate", json={"text": FRENCH, "target_lang": "xx"})
    assert nowhere.status_code == 400
    assert nowhere.json()["error"]["field"] == "target_lang"


def test_frontend_settings_from_limits_and_models(make_client: MakeClient) -> None:
    settings = make_client(max_total_chars=1234, api_keys="k").get(
        f"{BASE}/frontend/settings").json()
    assert settings == {
        "charLimit": 1234, "frontendTimeout": 500, "apiKeys": True, "keyRequired": True,
        "suggestions": False, "filesTranslation": True,
        "supportedFilesFormat": [".txt", ".html", ".htm"],
        "language": {"source": {"code": "auto", "name": "Auto Detect"},
                     "target": {"code": "de", "name": "German"}}}


def test_text_file_round_trip_keeps_lines(client: TestClient) -> None:
    text = "Hello there.\n\n  Indented line  \r\nlast"
    answer = client.post(f"{BASE}/translate_file", data={"source": "en", "target": "fr"},
                         files={"file": ("notes.txt", text.encode(), "text/plain")})
    assert answer.status_code == 200, answer.text
    url = answer.json()["translatedFileUrl"]
    assert url.startswith("http://testserver/libretranslate/download_file/")
    name = url.rsplit("/", 1)[1]
    assert name.endswith(".notes.txt") and len(name.split(".")[0]) >= 32
    download = client.get(url)
    assert download.status_code == 200
    assert download.text == "fr:Hello there.\n\n  fr:Indented line  \r\nfr:last"
    assert download.headers["content-disposition"] == 'attachment; filename="notes.txt"'


def test_html_file_keeps_markup(client: TestClient) -> None:
    page = b"<html><body><p>Good <b>day</b></p><script>x()</script></body></html>"
    answer = client.post(f"{BASE}/translate_file", data={"source": "en", "target": "fr"},
                         files={"file": ("page.html", page, "text/html")})
    download = client.get(answer.json()["translatedFileUrl"])
    assert download.text == ("<html><body><p>fr:Good <b>fr:day</b></p><script>x()</script>"
                             "</body></html>")
    assert download.headers["content-type"].startswith("text/html")


def test_translated_files_expire(make_client: MakeClient) -> None:
    client = make_client(translated_file_ttl_s=1e-9)
    answer = client.post(f"{BASE}/translate_file", data={"source": "en", "target": "fr"},
                         files={"file": ("a.txt", b"x", "text/plain")})
    gone = client.get(answer.json()["translatedFileUrl"])
    assert gone.status_code == 400 and gone.json()["error"] == "Invalid filename"


def test_suggest_health_and_spec(client: TestClient) -> None:
    suggest = client.post(f"{BASE}/suggest", json={"q": "a", "s": "b", "source": "en",
                                                   "target": "fr"})
    assert suggest.status_code == 403
    assert suggest.json()["error"] == "Suggestions are disabled on this server."
    assert client.get(f"{BASE}/health").json() == {"status": "ok"}
    assert client.post(f"{BASE}/health").status_code == 405
    spec = client.get(f"{BASE}/spec").json()
    assert set(spec["paths"]) >= {f"{BASE}/translate", f"{BASE}/detect",
                                  f"{BASE}/translate_file", f"{BASE}/frontend/settings"}
    assert all(path.startswith(f"{BASE}/") for path in spec["paths"])
    content = spec["paths"][f"{BASE}/translate"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "application/x-www-form-urlencoded",
                            "multipart/form-data"}
    assert "file" in spec["paths"][f"{BASE}/translate_file"]["post"]["requestBody"][
        "content"]["multipart/form-data"]["schema"]["properties"]


def test_at_root_by_setting(make_client: MakeClient) -> None:
    client = make_client(libretranslate_at_root=True)
    assert client.get("/languages").json() == client.get(f"{BASE}/languages").json()
    libre = client.post("/translate", json={"q": "hi", "source": "en", "target": "fr"})
    assert libre.json() == {"translatedText": "fr:hi"}
    form = client.post("/translate", params={"q": "hi", "source": "en", "target": "fr"})
    assert form.json() == {"translatedText": "fr:hi"}
    native = client.post("/translate", json={"text": "hi", "source_lang": "en",
                                             "target_lang": "fr"})
    assert native.json()["translations"][0]["text"] == "fr:hi"
    answer = client.post("/translate_file", data={"source": "en", "target": "fr"},
                         files={"file": ("a.txt", b"x", "text/plain")})
    url = answer.json()["translatedFileUrl"]
    assert url.startswith("http://testserver/download_file/")
    assert client.get(url).text == "fr:x"
    off = make_client()
    assert off.get("/languages").status_code == 404
