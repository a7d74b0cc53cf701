"""Authentication: every protected route refuses missing and wrong keys, the key comparison
goes through a constant-time compare against every stored hash, and keys never reach the
logs."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.logs import JsonFormatter
from service.api.security import KeyChecker
from tests.reliability.conftest import StartClient

KEY = "k3y-" + "0123456789abcdef" * 4
WRONG = {"missing": {}, "wrong": {"X-API-Key": "not-the-key"},
         "prefix": {"Authorization": f"Bearer {KEY[:-1]}"},
         "longer": {"Authorization": f"Bearer {KEY}x"}, "empty-bearer": {"Authorization":
                                                                         "Bearer "}}
CODES = {"missing": "missing_api_key", "empty-bearer": "missing_api_key"}
TRANSLATE: dict[str, object] = {"text": "a", "source_lang": "en", "target_lang": "fr"}
LIBRE: dict[str, object] = {"q": "a", "source": "en", "target": "fr"}
ROUTES: list[tuple[str, str, dict[str, object] | None]] = [
    ("POST", "/translate", TRANSLATE), ("POST", "/libretranslate/translate", LIBRE),
    ("GET", "/models", None), ("GET", "/health/live", None), ("GET", "/health/ready", None),
    ("GET", "/metrics", None)]


def send(client: TestClient, method: str, path: str, body: dict[str, object] | None,
         headers: dict[str, str]) -> tuple[int, str | None]:
    """Status and error code (either error shape) of one request."""
    response = client.request(method, path, json=body, headers=headers)
    if response.status_code not in (400, 401, 403):
        return response.status_code, None
    if response.status_code == 401:
        assert response.headers["www-authenticate"] == 'Bearer realm="translate"'
    error: dict[str, Any] = response.json()
    libre = path.startswith("/libretranslate/")
    return response.status_code, error["code"] if libre else error["error"]["code"]


def refusal(path: str, wrong: str) -> tuple[int, str]:
    """401 with the code; LibreTranslate's routes answer as LibreTranslate does: 400 for a
    missing key, 403 for a wrong one."""
    code = CODES.get(wrong, "invalid_api_key")
    if path.startswith("/libretranslate/"):
        return (400 if code == "missing_api_key" else 403), code
    return 401, code


@pytest.mark.parametrize("wrong", WRONG, ids=WRONG.keys())
@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[p for _, p, _ in ROUTES])
def test_protected_routes_refuse_missing_and_wrong_keys(
        start_client: StartClient, method: str, path: str, body: dict[str, object] | None,
        wrong: str) -> None:
    """A refusal with the right code on every route (health and metrics with
    ``auth_health``); the right key passes."""
    client = start_client(api_keys=[KEY], auth_health=True)
    assert send(client, method, path, body, WRONG[wrong]) == refusal(path, wrong)
    assert send(client, method, path, body, {"X-API-Key": KEY})[0] == 200


def test_languages_and_default_health_stay_public(start_client: StartClient) -> None:
    """Documented exceptions: LibreTranslate's languages list, and health without
    ``auth_health`` (so orchestrators can probe)."""
    client = start_client(api_keys=[KEY])
    for path in ("/libretranslate/languages", "/health/live", "/health/ready", "/metrics"):
        assert client.get(path).status_code == 200, path


def compare_spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    """Every constant-time comparison made from now on (``hmac.compare_digest`` and its
    alias ``secrets.compare_digest``), recorded and then answered by the real function."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((bytes(a), bytes(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    monkeypatch.setattr(secrets, "compare_digest", spy)
    return calls


def sha256(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@pytest.mark.parametrize("guess", [KEY, "x" * len(KEY), KEY[:-1] + "x", ""],
                         ids=["right", "far", "near", "empty"])
def test_every_stored_hash_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch,
                                                         guess: str) -> None:
    """The key's sha256 goes through ``compare_digest`` against each stored hash, whichever
    matches and however much of the key is right: the time depends on neither (a ``==``
    would stop at the first differing byte, and an early return at the matching hash)."""
    others = [sha256(f"other-{i}") for i in range(3)]
    stored = [*others[:1], sha256(KEY), *others[1:]]
    checker = KeyChecker(frozenset(digest.hex() for digest in stored))
    calls = compare_spy(monkeypatch)
    assert checker.accepts(guess) == (guess == KEY)
    assert sorted(calls) == sorted((sha256(guess), digest) for digest in stored)


def test_keys_never_reach_the_logs(start_client: StartClient,
                                   caplog: pytest.LogCaptureFixture) -> None:
    """Right and wrong keys in every accepted place, and in failing requests: no log record
    (message, extra fields or formatted JSON line) and no response body contains them."""
    wrong = "wr0ng-" + KEY[6:]
    client = start_client(api_keys=[KEY], auth_health=True, log_level="debug")
    bodies = []
    with caplog.at_level(logging.DEBUG):
        for key in (KEY, wrong):
            bodies += [
                client.post("/translate", json=TRANSLATE, headers={"X-API-Key": key}),
                client.post("/translate", json={**TRANSLATE, "api_key": key},
                            headers={"Authorization": f"Bearer {key}"}),
                client.post("/libretranslate/translate", json={**LIBRE, "api_key": key}),
                client.post("/libretranslate/translate", data={**LIBRE, "api_key": key}),
                client.post("/libretranslate/translate", json={"q": 5, "api_key": key},
                            headers={"X-API-Key": key}),
                client.get(f"/models?api_key={key}", headers={"X-API-Key": key}),
                client.get("/metrics", headers={"X-API-Key": key})]
    server = [r for r in caplog.records if not r.name.startswith("httpx")]  # not the client's
    assert sum(r.name == "service.access" for r in server) >= len(bodies)
    formatter = JsonFormatter()
    for record in server:
        text = formatter.format(record) + repr(vars(record))
        assert KEY not in text and wrong not in text, text
    for response in bodies:
        assert KEY not in response.text and wrong not in response.text, response.text
