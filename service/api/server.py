"""Run the app under uvicorn with a graceful drain on SIGTERM/SIGINT.

First signal: readiness turns 503 and new requests get 503 while in-flight ones finish;
uvicorn is told to exit once nothing is in flight or ``drain_timeout_s`` has passed; the
lifespan then drains the batchers and the process exits 0. A second signal stops at once.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

import uvicorn
from fastapi import FastAPI

from service.api.lifecycle import Lifecycle
from service.api.settings import Settings
from service.api.transport import CoalescingHTTPProtocol

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """``uvicorn.Server`` whose exit signal starts a drain instead of stopping at once."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, drain_timeout: float
                 ) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle
        self.drain_timeout = drain_timeout
        self._announced = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Signal handler: begin draining (the signal is not re-raised after shutdown, so a
        drained process exits 0)."""
        if self.lifecycle.draining:
            self.should_exit = True
            self.force_exit = sig == signal.SIGINT
            return
        self.lifecycle.begin_drain()

    async def on_tick(self, counter: int) -> bool:
        """Exit once drained, or when strict loading failed."""
        lifecycle = self.lifecycle
        if lifecycle.draining and not self._announced:
            self._announced = True
            log.info("draining", extra={"fields": {"in_flight": lifecycle.in_flight}})
        if lifecycle.drained(self.drain_timeout) or lifecycle.failure is not None:
            self.should_exit = True
        return await super().on_tick(counter)


def serve(app: FastAPI, settings: Settings) -> int:
    """Serve until drained; the exit code (0 after a clean drain, 1 if loading failed)."""
    lifecycle: Lifecycle = app.state.service.lifecycle
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                            access_log=False, server_header=False, lifespan="on",
                            http=CoalescingHTTPProtocol,
                            timeout_graceful_shutdown=max(1, int(settings.drain_timeout_s)))
    server = DrainingServer(config, lifecycle, settings.drain_timeout_s)
    server.run()
    if lifecycle.failure is not None:
        return 1
    return 0 if server.started else 3
