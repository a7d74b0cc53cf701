"""The uvicorn wrapper's drain logic and the documentation of every setting."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from service.api.app import create_app
from service.api.lifecycle import Lifecycle
from service.api.server import DrainingServer, serve
from service.api.settings import Settings, check_environment
from tests.service.api.fakes import FakeLoader

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs" / "service.md"


def server(drain_timeout: float = 30) -> tuple[DrainingServer, Lifecycle]:
    lifecycle = Lifecycle(phase="ready")
    return DrainingServer(uvicorn.Config(FastAPI()), lifecycle, drain_timeout), lifecycle


def test_sigterm_drains_in_flight_work_before_exiting() -> None:
    srv, lifecycle = server()
    lifecycle.in_flight = 1
    srv.handle_exit(signal.SIGTERM, None)
    assert lifecycle.draining and not srv.should_exit
    assert asyncio.run(srv.on_tick(1)) is False  # one request still running
    lifecycle.in_flight = 0
    assert asyncio.run(srv.on_tick(2)) is True
    assert srv._captured_signals == []  # not re-raised after shutdown: exit code 0


def test_drain_timeout_and_second_signal() -> None:
    srv, lifecycle = server(drain_timeout=0)
    lifecycle.in_flight = 3
    srv.handle_exit(signal.SIGTERM, None)
    assert asyncio.run(srv.on_tick(1)) is True
    again, lifecycle = server()
    lifecycle.in_flight = 3
    again.handle_exit(signal.SIGTERM, None)
    again.handle_exit(signal.SIGINT, None)
    assert again.should_exit and again.force_exit


def test_failed_startup_stops_the_server() -> None:
    srv, lifecycle = server()
    lifecycle.phase, lifecycle.failure = "failed", "broken bundle"
    assert asyncio.run(srv.on_tick(1)) is True


def test_strict_failure_exits_1(models_dir: Path) -> None:
    settings = Settings(models_dir=models_dir, port=0, drain_timeout_s=1)
    app = create_app(settings, loader=FakeLoader(broken={"en-de"}))
    assert serve(app, settings) == 1


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    missing = [name for name in Settings.model_fields
               if f"`TRANSLATE_{name.upper()}`" not in text]
    assert not missing
    table = re.findall(r"^\| `(TRANSLATE_\w+)` \|", text, flags=re.MULTILINE)
    assert len(table) == len(Settings.model_fields)
    check_environment(dict.fromkeys(table, ""), Settings.model_fields)  # no stale row


def test_deployments_set_only_settings() -> None:
    for path in (ROOT / "docker-compose.yml", ROOT / "deploy" / "k8s" / "configmap.yaml",
                 ROOT / "deploy" / "k8s" / "gpu.yaml"):
        names = re.findall(r"\b(TRANSLATE_\w+)\b", path.read_text())
        assert names, path
        check_environment(dict.fromkeys(names, ""), Settings.model_fields)
