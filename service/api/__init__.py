"""HTTP service: FastAPI app factory, dynamic batching, limits, auth, health and metrics."""

from service.api.app import create_app
from service.api.settings import Settings

__all__ = ["Settings", "create_app"]
