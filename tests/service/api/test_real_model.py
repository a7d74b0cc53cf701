"""The service over the real tiny exported bundle: in-process, then as a real server process
that is stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from inference import Translator
from service.api.app import create_app
from service.api.engine import TranslatorEngine
from service.api.registry import load_translator
from service.api.settings import Settings
from tests.service.api.fakes import copy_bundle, wait_ready

SENTENCES = ["the cat eats fish.", "the big dog sees the red cat.", "small fish."]
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def real_models(trained_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory with the trained bundle (fp32) and its int8 variant, labelled en->fr
    (the fixture exports ``run/best`` directly, whose config records no languages: "und")."""
    root = tmp_path_factory.mktemp("served")
    bundle = copy_bundle(trained_bundle, root, "tiny-en-fr")
    for manifest in (bundle / "model.json", bundle / "int8" / "model.json"):
        raw = json.loads(manifest.read_text())
        raw.update(source_lang="en", target_lang="fr")
        manifest.write_text(json.dumps(raw))
    return root


def test_the_service_lets_the_decoder_spin(trained_bundle: Path) -> None:
    engine = load_translator(trained_bundle, Settings())
    assert isinstance(engine, TranslatorEngine)
    options = engine.translator.model.decoder.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"


def expected_texts(bundle: Path, texts: list[str], beam_size: int) -> list[str]:
    """The engine's own translations of ``texts``, one request each, outside the service."""
    translator = Translator.load(bundle, threads=1)
    return [translator.translate([text], beam_size=beam_size)[0].text for text in texts]


def test_translate_with_the_real_engine(real_models: Path) -> None:
    """Each answer is the engine's own translation of that request's text (not another's),
    at the precision and beam the request asked for."""
    bundle = real_models / "tiny-en-fr"
    expected = Translator.load(bundle, threads=1).translate([SENTENCES[0]], beam_size=4,
                                                            num_hypotheses=2)[0]
    greedy = dict(zip(SENTENCES, expected_texts(bundle, SENTENCES, 1), strict=True))
    assert len(set(greedy.values())) == len(SENTENCES)  # a swapped answer would show
    int8 = expected_texts(bundle / "int8", SENTENCES[:1], 1)[0]
    settings = Settings(models_dir=real_models, threads=1, max_wait_ms=20)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        models = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert set(models) == {"tiny-en-fr", "tiny-en-fr-int8"}
        assert models["tiny-en-fr"]["default"] and models["tiny-en-fr"]["dtype"] == "float32"
        assert models["tiny-en-fr"]["provider"] == "CPUExecutionProvider"
        body = client.post("/translate", json={"text": [SENTENCES[0], " "], "source_lang": "en",
                                               "target_lang": "fr", "beam_size": 4,
                                               "num_hypotheses": 2}).json()
        first, blank = body["translations"]
        assert body["model"] == "tiny-en-fr" and blank["text"] == " "
        assert first["text"] == expected.text and first["finish_reason"] == expected.finish_reason
        assert [a["text"] for a in first["alternatives"]] == [a.text for a in
                                                              expected.alternatives]
        assert body["usage"]["source_tokens"] > 0 and body["usage"]["target_tokens"] > 0
        with ThreadPoolExecutor(6) as pool:  # batched together: answers must not swap
            replies = list(pool.map(lambda text: client.post("/translate", json={
                "text": text, "model": "tiny-en-fr", "beam_size": 1}), SENTENCES * 2))
        assert all(r.status_code == 200 for r in replies)
        assert [r.json()["translations"][0]["text"] for r in replies] == [
            greedy[text] for text in SENTENCES * 2]
        # alone (dynamic int8 scales activations per batch, so batch-mates change its output)
        reply = client.post("/translate", json={"text": SENTENCES[0], "model": "tiny-en-fr-int8",
                                                "beam_size": 1})
        assert reply.json()["translations"][0]["text"] == int8
        odd = ["I ❤️ 🐟, le chat ест 猫!", "\u200b", "fish " * 300, "x" * 2000]
        reply = client.post("/translate", json={"text": odd, "source_lang": "en",
                                                "target_lang": "fr", "max_length": 8})
        assert reply.status_code == 200, reply.text
        assert len(reply.json()["translations"]) == 4
        metrics = client.get("/metrics").text
        assert 'translate_decode_steps_total{model="tiny-en-fr-int8"}' in metrics


def call(url: str, body: dict[str, object] | None = None, form: bool = False
         ) -> tuple[int, dict[str, str], Any]:
    """Status, headers and JSON body of one HTTP request (stdlib only)."""
    data, headers = None, {}
    if body is not None:
        data = (urlencode(body) if form else json.dumps(body)).encode()
        headers["Content-Type"] = ("application/x-www-form-urlencoded" if form
                                   else "application/json")
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, dict(reply.headers), json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


LISTENING = re.compile(r"Uvicorn running on http://[^ ]+:(\d+)")


def start_service(models: Path, env: dict[str, str], log: Path
                  ) -> tuple[subprocess.Popen[bytes], int]:
    """``python -m service`` on a port the system picks (``--port 0``: no other process can
    take it in between) with ``env`` added, its stdout and stderr written to ``log`` (a file:
    a pipe nobody reads would block the server once its access log filled the 64 KiB pipe).
    Returns the process and its port."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "--port", "0", "--models", str(models)],
            cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        return process, listening_port(process, log)
    except BaseException:
        process.kill()
        process.wait()
        raise


def listening_port(process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> int:
    """The port the server's log says it listens on."""
    deadline = time.monotonic() + timeout
    while not (match := LISTENING.search(log.read_text(errors="replace"))):
        assert process.poll() is None, log_tail(log)
        assert time.monotonic() < deadline, "the server never said where it listens"
        time.sleep(0.05)
    return int(match.group(1))


def log_tail(log: Path) -> str:
    """The end of a server's log, for an assertion message."""
    return log.read_text(errors="replace")[-2000:]


def wait_for_ready(base: str, process: subprocess.Popen[bytes], log: Path,
                   timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log_tail(log)
        try:
            if call(f"{base}/health/ready")[0] == 200:
                return
        except OSError:  # not listening yet
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not become ready")


def test_server_process_translates_and_exits_0_on_sigterm(real_models: Path,
                                                          tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    expected = expected_texts(real_models / "tiny-en-fr", SENTENCES[:2], 4)
    process, port = start_service(real_models, {"TRANSLATE_THREADS": "1",
                                                "TRANSLATE_DEFAULT_BEAM_SIZE": "4",
                                                "TRANSLATE_DRAIN_TIMEOUT_S": "5"}, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_ready(base, process, log)
        status, headers, body = call(f"{base}/translate", {
            "text": SENTENCES[0], "source_lang": "en", "target_lang": "fr"})
        assert status == 200 and body["translations"][0]["text"] == expected[0]
        assert headers["x-request-id"]
        status, _, body = call(f"{base}/libretranslate/translate", {
            "q": SENTENCES[1], "source": "auto", "target": "fr"}, form=True)
        assert status == 200 and body["translatedText"] == expected[1]
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, log_tail(log)
    assert '"message": "stopped"' in log.read_text()
