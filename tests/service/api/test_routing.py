"""Routing with a multilingual bundle beside one-pair bundles (fake engines): which bundle
serves a pair, the languages listed, the pair each request hands the engine, the explicit
model route, and the HTML, file and detection routes over every language of the bundle."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.service.api.fakes import FakeLoader, MakeClient, error_of, write_manifest
from tests.service.api.test_libretranslate_routes import BASE, FRENCH, GERMAN

LANGUAGES = ("de", "en", "es", "fr")


def served_by(client: TestClient, source: str, target: str) -> str:
    """The model that answers ``source`` -> ``target``; its text shows the target."""
    reply = client.post("/translate", json={"text": "x", "source_lang": source,
                                            "target_lang": target})
    assert reply.status_code == 200, reply.text
    assert reply.json()["translations"][0]["text"] == f"{target}:x"
    return str(reply.json()["model"])


def test_a_one_pair_model_wins_over_a_multilingual_one_which_wins_over_the_demos(
        make_client: MakeClient, models_dir: Path) -> None:
    write_manifest(models_dir / "nllb", languages=LANGUAGES)
    client = make_client()  # en-fr and en-de record no BLEU: models the user added
    assert [served_by(client, *pair) for pair in (("en", "fr"), ("en", "de"), ("en", "es"),
                                                  ("fr", "de"))] == [
        "en-fr", "en-de", "nllb", "nllb"]
    write_manifest(models_dir / "en-fr", bleu=18.1)  # packaged: a shipped demo
    write_manifest(models_dir / "en-fr" / "int8", dtype="int8", bleu=18.0)
    demos = make_client()
    assert [served_by(demos, "en", "fr"), served_by(demos, "en", "de")] == ["nllb", "en-de"]
    defaults = {m["name"] for m in demos.get("/models").json()["models"] if m["default"]}
    assert defaults == {"nllb", "en-de"}
    preferred = make_client(default_models="en-fr-int8,nllb")
    assert [served_by(preferred, "en", "fr"), served_by(preferred, "en", "de")] == [
        "en-fr-int8", "nllb"]


def test_languages_list_every_pair_with_its_targets(make_client: MakeClient,
                                                    models_dir: Path) -> None:
    write_manifest(models_dir / "nllb", src="de", tgt="es", languages=("de", "en", "es"))
    write_manifest(models_dir / "en-it", tgt="it")
    client = make_client()
    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert models["nllb"]["languages"] == [{"code": "de", "targets": ["en", "es"]},
                                           {"code": "en", "targets": ["de", "es"]},
                                           {"code": "es", "targets": ["de", "en"]}]
    assert models["en-it"]["languages"] == [{"code": "en", "targets": ["it"]},
                                            {"code": "it", "targets": []}]
    libre = client.get("/libretranslate/languages").json()
    assert [(entry["code"], entry["targets"]) for entry in libre] == [
        ("de", ["en", "es"]), ("en", ["de", "es", "fr", "it"]), ("es", ["de", "en"]),
        ("fr", []), ("it", [])]
    assert client.get("/libretranslate/frontend/settings").json()["language"]["target"][
        "code"] == "de"


def test_each_request_hands_the_engine_its_pair(make_client: MakeClient,
                                                models_dir: Path) -> None:
    write_manifest(models_dir / "nllb", languages=LANGUAGES)
    loader = FakeLoader()
    client = make_client(loader)
    engine = loader.engines[models_dir / "nllb"]
    assert served_by(client, "es", "de") == "nllb"
    assert engine.pairs[-1] == [("es", "de")]
    answer = client.post("/libretranslate/translate", json={"q": ["a", "b"], "source": "fr",
                                                            "target": "es"}).json()
    assert answer["translatedText"] == ["es:a", "es:b"]
    assert engine.pairs[-1] == [("fr", "es"), ("fr", "es")]
    explicit = client.post("/translate", json={"text": "x", "model": "nllb",
                                               "target_lang": "de"}).json()
    assert (explicit["source_lang"], explicit["target_lang"]) == ("en", "de")  # exported source
    error = error_of(client.post("/translate", json={"text": "x", "model": "nllb",
                                                     "source_lang": "it"}), 422)
    assert (error["field"], error["details"]) == ("source_lang", {"languages": list(LANGUAGES)})


def test_html_files_and_detection_reach_every_language_of_the_bundle(
        make_client: MakeClient, models_dir: Path) -> None:
    write_manifest(models_dir / "nllb", languages=LANGUAGES)
    client = make_client()
    html = client.post("/translate", json={"text": "<p>Good <b>day</b></p>", "format": "html",
                                           "source_lang": "en", "target_lang": "es"}).json()
    assert (html["model"], html["translations"][0]["text"]) == (
        "nllb", "<p>es:Good <b>es:day</b></p>")  # each text run translated
    upload = client.post(f"{BASE}/translate_file", data={"source": "de", "target": "fr"},
                         files={"file": ("a.txt", b"Guten Tag.\nDanke.", "text/plain")})
    assert upload.status_code == 200, upload.text
    assert client.get(upload.json()["translatedFileUrl"]).text == "fr:Guten Tag.\nfr:Danke."
    found = client.post(f"{BASE}/detect", data={"q": GERMAN}).json()
    assert found[0]["language"] == "de"
    assert {entry["language"] for entry in found} <= set(LANGUAGES)
    auto = client.post(f"{BASE}/translate", json={"q": [FRENCH, GERMAN], "source": "auto",
                                                  "target": "es"}).json()
    assert auto["translatedText"] == [f"es:{FRENCH}", f"es:{GERMAN}"]
    assert [d["language"] for d in auto["detectedLanguage"]] == ["fr", "de"]
