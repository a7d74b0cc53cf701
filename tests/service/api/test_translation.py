"""The domain layer below the routes: disconnects, option defaults, unhandled errors."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from service.api.errors import ApiError
from service.api.registry import ModelRegistry
from service.api.settings import Settings
from service.api.translation import TranslationService, until_disconnected
from tests.service.api.fakes import error_of


def test_disconnect_cancels_the_work() -> None:
    async def scenario() -> list[str]:
        messages: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        request = Request({"type": "http", "method": "POST", "path": "/", "headers": []},
                          messages.get)
        events: list[str] = []

        async def work() -> str:
            events.append("started")
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                events.append("cancelled")
                raise
            return "done"

        task = asyncio.ensure_future(until_disconnected(request, work()))
        while "started" not in events:  # the work is running before the client leaves
            await asyncio.sleep(0)
        await messages.put({"type": "http.disconnect"})
        with pytest.raises(ApiError) as caught:
            await task
        assert caught.value.status == 499
        await asyncio.sleep(0)
        return events

    assert asyncio.run(scenario()) == ["started", "cancelled"]


def test_beam_defaults_grow_to_the_hypotheses() -> None:
    settings = Settings(default_beam_size=2)
    service = TranslationService(ModelRegistry(settings), settings)
    options = service.options(beam_size=None, num_hypotheses=3, length_penalty=1.0,
                              max_length=None, timeout=99)
    assert (options.decode.beam_size, options.decode.num_hypotheses) == (3, 3)
    assert options.timeout == settings.request_timeout_s  # capped


def test_unhandled_error_is_a_json_500_without_trace(client: TestClient,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    registry = client.app.state.service.registry  # type: ignore[attr-defined]

    def broken() -> None:
        raise KeyError("internal detail")

    monkeypatch.setattr(registry, "routes", broken)
    response = client.post("/translate", json={"text": "x", "model": "en-fr"},
                           headers={"X-Request-ID": "boom"})
    error = error_of(response, 500)
    assert error["code"] == "internal_error" and "internal detail" not in response.text
    assert response.headers["x-request-id"] == "boom"
