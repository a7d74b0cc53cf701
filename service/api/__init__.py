"""HTTP service: FastAPI app factory, dynamic batching, limits, auth, health and metrics.

``create_app`` and ``Settings`` are imported on first use, so that the batchers
(``service.api.batcher``, ``service.api.continuous``) can be used without the web stack
(``bench.in_process`` on a machine with ONNX Runtime only)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.api.app import create_app
    from service.api.settings import Settings

__all__ = ["Settings", "create_app"]
_HOMES = {"create_app": "service.api.app", "Settings": "service.api.settings"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
