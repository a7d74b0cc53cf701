"""API keys, CORS, request ids, structured logs and settings parsing."""

from __future__ import annotations

import json
import logging

import pytest

from service.api.logs import JsonFormatter
from service.api.settings import Settings, hash_key
from tests.service.api.fakes import MakeClient, error_of

EN_FR = {"text": "x", "source_lang": "en", "target_lang": "fr"}


def test_keys_from_bearer_or_header(make_client: MakeClient) -> None:
    client = make_client(api_keys="alpha,beta")
    missing = client.post("/translate", json=EN_FR)
    assert error_of(missing, 401)["code"] == "missing_api_key"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = client.post("/translate", json=EN_FR, headers={"Authorization": "Bearer gamma"})
    assert error_of(wrong, 401)["code"] == "invalid_api_key"
    for headers in ({"Authorization": "Bearer alpha"}, {"X-API-Key": "beta"}):
        assert client.post("/translate", json=EN_FR, headers=headers).status_code == 200
    assert client.get("/models").status_code == 401
    assert client.get("/health/ready").status_code == 200  # ops open by default
    assert client.get("/metrics").status_code == 200


def test_hashed_keys_and_protected_ops(make_client: MakeClient) -> None:
    client = make_client(api_key_hashes=hash_key("s3cret").upper(), auth_health=True,
                         ready=False)
    assert client.get("/health/live").status_code == 401
    headers = {"X-API-Key": "s3cret"}
    assert client.get("/health/live", headers=headers).status_code == 200
    assert client.get("/metrics", headers=headers).status_code == 200
    assert client.get("/metrics", headers={"X-API-Key": "nope"}).status_code == 401


def test_settings_parse_lists_and_reject_bad_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSLATE_API_KEYS", '["key-one", "key-two"]')
    monkeypatch.setenv("TRANSLATE_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("TRANSLATE_MAX_TEXTS", "7")
    settings = Settings()
    assert settings.key_hashes() == {hash_key("key-one"), hash_key("key-two")}
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.max_texts == 7
    assert "key-one" not in repr(settings)  # keys are secrets
    with pytest.raises(ValueError, match="64 hex digits"):
        Settings(api_key_hashes="not-a-hash")  # type: ignore[arg-type]


def test_cors_allow_list(make_client: MakeClient) -> None:
    client = make_client(cors_origins="https://app.example")
    preflight = {"Access-Control-Request-Method": "POST"}
    allowed = client.options("/translate", headers={"Origin": "https://app.example",
                                                    **preflight})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    denied = client.options("/translate", headers={"Origin": "https://evil.example",
                                                   **preflight})
    assert "access-control-allow-origin" not in denied.headers


def test_request_id_echoed_or_generated(make_client: MakeClient) -> None:
    client = make_client()
    echoed = client.post("/translate", json=EN_FR, headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    unsafe = client.get("/health/live", headers={"X-Request-ID": "bad id\twith spaces"})
    assert len(unsafe.headers["x-request-id"]) == 32
    error = error_of(client.post("/translate", json={"text": 1},
                                 headers={"X-Request-ID": "req-9"}), 422)
    assert error["request_id"] == "req-9"


def test_access_log_is_json_with_request_id_and_no_key(make_client: MakeClient,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    client = make_client(api_keys="topsecret")
    with caplog.at_level(logging.INFO, logger="service.access"):
        client.post("/translate", json=EN_FR, headers={"Authorization": "Bearer topsecret",
                                                       "X-Request-ID": "log-1"})
    records = [r for r in caplog.records if r.name == "service.access"]
    line = json.loads(JsonFormatter().format(records[-1]))
    assert line["request_id"] == "log-1" and line["route"] == "/translate"
    assert line["status"] == 200 and line["method"] == "POST" and "duration_ms" in line
    assert "topsecret" not in caplog.text
