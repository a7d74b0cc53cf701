"""Authentication: every protected route refuses missing and wrong keys, the key comparison
takes the same time however much of a key matches, and keys never reach the logs."""

from __future__ import annotations

import hashlib
import logging
import statistics
import time
from collections.abc import Callable
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


def digest_sharing(key: str, shared: int) -> str:
    """A stored hash whose first ``shared`` bytes equal the key's sha256 (the rest differ)."""
    digest = hashlib.sha256(key.encode()).digest()
    tail = bytes(b ^ 0xFF for b in digest[shared:])
    return (digest[:shared] + tail).hex()


def batch_time(check: Callable[[str], bool], key: str, repeat: int = 300) -> float:
    """Seconds for ``repeat`` calls of ``check(key)``."""
    began = time.perf_counter()
    for _ in range(repeat):
        check(key)
    return time.perf_counter() - began


def median_ratio(first: Callable[[], float], second: Callable[[], float],
                 rounds: int = 41) -> float:
    """Ratio of the median batch times, batches interleaved so that drift hits both."""
    a, b = [], []
    for _ in range(rounds):
        a.append(first())
        b.append(second())
    return statistics.median(a) / statistics.median(b)


def test_hash_comparison_time_does_not_depend_on_matching_bytes() -> None:
    """Stored hashes sharing 0 or 31 of 32 bytes with the key's digest: same median time."""
    guess = "attacker-guess"
    none, most = (KeyChecker(frozenset({digest_sharing(guess, n)})) for n in (0, 31))
    ratio = median_ratio(lambda: batch_time(none.accepts, guess),
                         lambda: batch_time(most.accepts, guess))
    print(f"\nauth timing: 0 vs 31 matching digest bytes, median ratio {ratio:.3f}")
    assert 0.67 < ratio < 1.5


def test_key_comparison_time_does_not_depend_on_matching_prefix() -> None:
    """A guess sharing no character with the key, or all but the last: same median time."""
    checker = KeyChecker(frozenset({hashlib.sha256(KEY.encode()).hexdigest()}))
    far, near = "x" * len(KEY), KEY[:-1] + "x"
    ratio = median_ratio(lambda: batch_time(checker.accepts, far),
                         lambda: batch_time(checker.accepts, near))
    print(f"auth timing: 0 vs {len(KEY) - 1} matching key characters, median ratio "
          f"{ratio:.3f}")
    assert 0.67 < ratio < 1.5


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
