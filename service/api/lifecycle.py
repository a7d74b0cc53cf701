"""The server's phase (loading, ready, failed, draining), in-flight count and readiness."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Literal

from service.api.registry import ModelRegistry
from service.api.settings import Settings

Phase = Literal["loading", "ready", "failed", "draining"]


@dataclass
class Readiness:
    """The answer of ``/health/ready``."""

    ready: bool
    reason: str
    unavailable: dict[str, str] = field(default_factory=dict)  # model -> why


@dataclass
class Lifecycle:
    """Shared by the lifespan, the middleware, the routes and ``python -m service``."""

    phase: Phase = "loading"
    failure: str | None = None  # why startup failed (strict loading)
    in_flight: int = 0  # requests being served, health and metrics excluded
    drain_started: float | None = None

    @property
    def draining(self) -> bool:
        """A shutdown signal arrived."""
        return self.drain_started is not None

    def begin_drain(self) -> None:
        """Readiness turns 503 and new requests are refused (safe in a signal handler)."""
        if self.drain_started is None:
            self.drain_started = time.monotonic()
            self.phase = "draining"

    def drained(self, timeout: float) -> bool:
        """Nothing in flight any more, or the drain timeout has passed."""
        if self.drain_started is None:
            return False
        return self.in_flight == 0 or time.monotonic() - self.drain_started >= timeout

    async def wait_drained(self, timeout: float) -> None:
        """Wait until :meth:`drained` (polling; shutdown is not a hot path)."""
        self.begin_drain()
        while not self.drained(timeout):
            await asyncio.sleep(0.05)

    def readiness(self, registry: ModelRegistry, settings: Settings) -> Readiness:
        """Ready only when loading finished and every required model is serving."""
        unavailable = {e.name: e.error or e.status for e in registry.failed()}
        if self.phase == "draining":
            return Readiness(False, "shutting down", unavailable)
        if self.phase == "failed":
            return Readiness(False, f"startup failed: {self.failure}", unavailable)
        if self.phase == "loading":
            total = len(registry.entries)
            return Readiness(False, f"loading models ({len(registry.ready())} of {total} ready)",
                             unavailable)
        missing = [name for name in settings.required_models
                   if name not in {e.name for e in registry.ready()}]
        if missing:
            return Readiness(False, f"required models unavailable: {', '.join(missing)}",
                             unavailable)
        if not registry.ready():
            return Readiness(False, "no model is loaded", unavailable)
        return Readiness(True, "ready", unavailable)
