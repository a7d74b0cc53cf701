"""Fixtures of the reliability tests: an app over scripted engines, started in process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.settings import Settings
from tests.service.api.fakes import FakeLoader, write_manifest

StartClient = Callable[..., TestClient]


def wait_until_ready(client: TestClient, headers: dict[str, str], timeout: float = 10) -> None:
    """Poll ``/health/ready`` (with ``headers``, e.g. a key) until 200."""
    deadline = time.monotonic() + timeout
    while client.get("/health/ready", headers=headers).status_code != 200:
        assert time.monotonic() < deadline, "the app never became ready"
        time.sleep(0.02)


@pytest.fixture
def fake_models(tmp_path: Path) -> Path:
    """One scripted ``en-fr`` bundle (so LibreTranslate's ``source=auto`` resolves)."""
    write_manifest(tmp_path / "models" / "en-fr")
    return tmp_path / "models"


@pytest.fixture(params=["continuous", "request"])
def batching(request: pytest.FixtureRequest) -> str:
    """Each scheduling strategy in turn (the fake engine supports both)."""
    return str(request.param)


@pytest.fixture
def start_client(fake_models: Path, batching: str) -> Iterator[StartClient]:
    """``start_client(loader=None, **settings)``: a started, ready TestClient."""
    with ExitStack() as stack:

        def start(loader: FakeLoader | None = None, **overrides: object) -> TestClient:
            settings = Settings(**{"models_dir": fake_models, "batching": batching,
                                   **overrides})  # type: ignore[arg-type]
            app = create_app(settings, loader=loader or FakeLoader())
            client = stack.enter_context(TestClient(app, raise_server_exceptions=False))
            keys = settings.api_keys
            wait_until_ready(client, {"X-API-Key": keys[0].get_secret_value()} if keys else {})
            return client

        yield start
