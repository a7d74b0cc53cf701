"""Schema fuzzing: schemathesis generates requests from ``/openapi.json`` for every operation,
valid ones and invalid ones, and checks that none gets a 5xx and that every response conforms
to the schema (status code, content type, headers, body).

The app runs in process (schemathesis's ASGI transport) over scripted engines, so a run takes
seconds; examples are derandomized, so every run sends the same requests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.api.app import create_app
from service.api.settings import Settings
from tests.service.api.fakes import FakeLoader, write_manifest

MAX_EXAMPLES = 25
OPERATIONS = [("POST", "/translate"), ("POST", "/translate/stream"),
              ("POST", "/libretranslate/translate"),
              ("GET", "/libretranslate/languages"), ("POST", "/libretranslate/detect"),
              ("POST", "/libretranslate/translate_file"),
              ("GET", "/libretranslate/download_file/{filename}"),
              ("POST", "/libretranslate/suggest"), ("GET", "/libretranslate/health"),
              ("GET", "/libretranslate/spec"), ("GET", "/libretranslate/frontend/settings"),
              ("GET", "/models"),
              ("GET", "/health/live"), ("GET", "/health/ready"), ("GET", "/metrics")]
CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance,
               response_headers_conformance, response_schema_conformance]
# Schema-valid requests may still be refused with a 4xx (server limits, unknown languages), so
# schemathesis's positive_data_acceptance is not asked for; schema-invalid ones must get a 4xx.
CASES = [(method, path, GenerationMode.POSITIVE) for method, path in OPERATIONS] + [
    (method, path, GenerationMode.NEGATIVE) for method, path in OPERATIONS if method == "POST"]


def fuzz_settings(models: Path) -> Settings:
    """Small limits, so generated values hit them; no keys (the schema declares none)."""
    return Settings(models_dir=models, max_wait_ms=1, request_timeout_s=5, max_texts=8,
                    max_chars_per_text=200, max_total_chars=800)


def wait_ready(client: asgi.ASGIClient, timeout: float = 10) -> None:
    """Poll ``/health/ready`` until 200."""
    deadline = time.monotonic() + timeout
    while client.get("/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "the app never became ready"
        time.sleep(0.02)


@pytest.fixture
def api_schema(tmp_path: Path) -> Iterator[schemathesis.BaseSchema]:
    """The schema of a new app, started (lifespan) and ready; stopped afterwards (the
    schemathesis pytest plugin also ends every ASGI lifespan after each test)."""
    write_manifest(tmp_path / "en-fr")
    write_manifest(tmp_path / "en-de", tgt="de")
    app = create_app(fuzz_settings(tmp_path), loader=FakeLoader())
    with asgi.get_client(app) as client:  # type: ignore[arg-type]  # ASGI types differ
        wait_ready(client)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    asgi.shutdown_lifespans()


def test_the_list_covers_every_operation(api_schema: schemathesis.BaseSchema) -> None:
    """The parametrization below names every operation of the schema."""
    operations = [result.ok() for result in api_schema.get_all_operations()
                  if isinstance(result, Ok)]
    assert {(op.method.upper(), op.path) for op in operations} == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_operation_conforms(api_schema: schemathesis.BaseSchema, method: str, path: str,
                            mode: GenerationMode) -> None:
    """``MAX_EXAMPLES`` generated requests: no 5xx, every response as the schema declares;
    invalid requests (negative mode, POST bodies) are refused with a 4xx."""
    operation = api_schema[path][method]
    checks = CONFORMANCE + ([negative_data_rejection] if mode == GenerationMode.NEGATIVE else [])

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=checks)

    check()
