"""Health, readiness phases, ``/models``, ``/metrics``, draining and the OpenAPI schema."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from fastapi.testclient import TestClient

from tests.service.api.fakes import FakeLoader, MakeClient, error_of, wait_ready, write_manifest

EN_FR = {"source_lang": "en", "target_lang": "fr"}


def test_ready_is_503_while_loading_then_200(make_client: MakeClient) -> None:
    gate = threading.Event()
    client = make_client(FakeLoader(release=gate), ready=False)
    assert client.get("/health/live").json() == {"status": "alive"}
    loading = client.get("/health/ready")
    assert loading.status_code == 503 and loading.json()["reason"].startswith("loading models")
    gate.set()
    wait_ready(client)
    assert client.get("/health/ready").json() == {"ready": True, "reason": "ready",
                                                  "unavailable": {}}


def test_strict_loading_fails_readiness(make_client: MakeClient) -> None:
    client = make_client(FakeLoader(broken={"en-de"}), ready=False)
    client.portal.call(_settle, client)  # type: ignore[union-attr]
    answer = client.get("/health/ready")
    assert answer.status_code == 503
    assert "startup failed" in answer.json()["reason"] and "en-de" in answer.json()["reason"]
    assert "checksum mismatch" in answer.json()["unavailable"]["en-de"]


async def _settle(client: TestClient) -> None:
    """Wait (inside the app's loop) until loading has finished."""
    import asyncio

    lifecycle = client.app.state.service.lifecycle  # type: ignore[attr-defined]
    for _ in range(500):
        if lifecycle.phase != "loading":
            return
        await asyncio.sleep(0.01)


def test_lenient_loading_serves_the_rest(make_client: MakeClient) -> None:
    client = make_client(FakeLoader(broken={"en-de"}), load_policy="lenient")
    ready = client.get("/health/ready").json()
    assert ready["ready"] and list(ready["unavailable"]) == ["en-de"]
    assert client.post("/translate", json={"text": "x", **EN_FR}).status_code == 200
    error = error_of(client.post("/translate", json={"text": "x", "source_lang": "en",
                                                     "target_lang": "de"}), 400)
    assert error["details"]["languages"] == ["fr"]
    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert models["en-de"]["status"] == "failed" and "checksum" in models["en-de"]["error"]


def test_lenient_required_model_failure_is_not_ready(make_client: MakeClient) -> None:
    client = make_client(FakeLoader(broken={"en-de"}), load_policy="lenient",
                         required_models="en-fr,en-de", ready=False)
    client.portal.call(_settle, client)  # type: ignore[union-attr]
    answer = client.get("/health/ready")
    assert answer.status_code == 503 and answer.json()["reason"] == (
        "required models unavailable: en-de")


def test_broken_manifest_and_empty_directory(make_client: MakeClient, models_dir: Path,
                                             tmp_path: Path) -> None:
    (models_dir / "en-de" / "model.json").write_text("{not json")
    client = make_client(load_policy="lenient")
    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert models["en-de"]["status"] == "failed" and "not valid JSON" in models["en-de"]["error"]
    empty = make_client(models_dir=tmp_path / "nothing", ready=False)
    empty.portal.call(_settle, empty)  # type: ignore[union-attr]
    assert "no bundle" in empty.get("/health/ready").json()["reason"]


def test_models_lists_everything(client: TestClient) -> None:
    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert set(models) == {"en-fr", "en-fr-int8", "en-de"}
    fr = models["en-fr"]
    assert (fr["source_lang"], fr["target_lang"], fr["dtype"], fr["architecture"]) == (
        "en", "fr", "float32", "transformer")
    assert fr["provider"] == "FakeExecutionProvider" and fr["status"] == "ready"
    assert fr["metadata"] == {"test_bleu": 12.5}
    assert fr["default"] and not models["en-fr-int8"]["default"]


def test_default_is_a_user_model_then_the_float32_bundle_with_the_best_recorded_bleu(
        make_client: MakeClient, models_dir: Path) -> None:
    write_manifest(models_dir / "a-en-fr", bleu=11.3)
    write_manifest(models_dir / "b-en-fr", bleu=18.1)
    write_manifest(models_dir / "b-en-fr" / "int8", dtype="int8", bleu=30.0)
    models = {m["name"]: m for m in make_client().get("/models").json()["models"]}
    defaults = sorted(name for name, model in models.items() if model["default"])
    assert defaults == ["en-de", "en-fr"]  # en-fr records no BLEU: a model the user added
    shutil.rmtree(models_dir / "en-fr")
    models = {m["name"]: m for m in make_client().get("/models").json()["models"]}
    defaults = sorted(name for name, model in models.items() if model["default"])
    assert defaults == ["b-en-fr", "en-de"]  # among packaged bundles: float32, best BLEU
    chosen = make_client(default_models="a-en-fr").get("/models").json()["models"]
    assert {m["name"] for m in chosen if m["default"]} == {"a-en-fr", "en-de"}


def test_metrics_after_a_translation(client: TestClient, batching: str) -> None:
    client.post("/translate", json={"text": ["a b", "c"], **EN_FR})
    client.get("/nowhere")
    text = client.get("/metrics").text
    # one report per step: request-level, one engine call with both texts; iteration-level
    # (the fake loop), a step that admits both texts and one that answers them
    steps = {"request": 1, "continuous": 2}[batching]
    for line in ('translate_http_requests_total{route="/translate",status="200"} 1.0',
                 'translate_http_requests_total{route="unmatched",status="404"} 1.0',
                 f'translate_batch_texts_count{{model="en-fr"}} {steps:.1f}',
                 'translate_batch_texts_sum{model="en-fr"} 2.0',
                 'translate_source_tokens_total{model="en-fr"}',
                 'translate_decode_steps_total{model="en-fr"} 3.0',
                 'translate_queue_depth{model="en-fr"} 0.0',
                 'translate_model_info{dtype="int8",model="en-fr-int8",'
                 'provider="FakeExecutionProvider"} 1.0',
                 "translate_http_request_duration_seconds_bucket",
                 "translate_queue_wait_seconds_bucket"):
        assert line in text, line


def test_draining_refuses_new_work_but_not_health(client: TestClient) -> None:
    client.app.state.service.lifecycle.begin_drain()  # type: ignore[attr-defined]
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["reason"] == "shutting down"
    refused = client.post("/translate", json={"text": "x", **EN_FR})
    assert error_of(refused, 503)["code"] == "shutting_down"
    assert refused.headers["retry-after"] == "5"
    assert client.get("/health/live").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_openapi_declares_error_responses(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    translate = schema["paths"]["/translate"]["post"]["responses"]
    for status in ("400", "401", "413", "422", "503", "504"):
        ref = translate[status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorBody")
    libre = schema["paths"]["/libretranslate/translate"]["post"]
    assert set(libre["requestBody"]["content"]) == {"application/json",
                                                    "application/x-www-form-urlencoded",
                                                    "multipart/form-data"}
    assert "503" in schema["paths"]["/health/ready"]["get"]["responses"]


def test_discovery_names_nested_bundles(tmp_path: Path) -> None:
    from service.api.registry import discover

    write_manifest(tmp_path / "a" / "int8")
    write_manifest(tmp_path / "b")
    assert [entry.name for entry in discover(tmp_path)] == ["a-int8", "b"]
    assert [entry.name for entry in discover(tmp_path / "b")] == ["b"]
