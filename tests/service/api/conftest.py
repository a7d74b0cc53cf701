"""Fixtures of the API tests: a fake models directory and started TestClients."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.settings import Settings
from tests.service.api.fakes import FakeLoader, MakeClient, wait_ready, write_manifest


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """``en-fr`` (fp32) with an ``int8`` variant, and ``en-de``."""
    root = tmp_path / "models"
    write_manifest(root / "en-fr")
    write_manifest(root / "en-fr" / "int8", dtype="int8")
    write_manifest(root / "en-de", tgt="de")
    return root


@pytest.fixture(params=["continuous", "request"])
def batching(request: pytest.FixtureRequest) -> str:
    """Each scheduling strategy in turn (the fake engine supports both)."""
    return str(request.param)


@pytest.fixture
def make_client(models_dir: Path, batching: str) -> Iterator[MakeClient]:
    """``make_client(loader=None, ready=True, **settings)``: a started TestClient."""
    with ExitStack() as stack:

        def make(loader: FakeLoader | None = None, ready: bool = True,
                 **overrides: object) -> TestClient:
            settings = Settings(**{"models_dir": models_dir, "batching": batching,
                                   **overrides})  # type: ignore[arg-type]
            app = create_app(settings, loader=loader or FakeLoader())
            client = stack.enter_context(TestClient(app, raise_server_exceptions=False))
            if ready:
                wait_ready(client)
            return client

        yield make


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client()
