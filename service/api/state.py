"""Everything one app instance holds, created by ``create_app`` and injected into routes."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from service.api.detection import Identifiers
from service.api.lifecycle import Lifecycle
from service.api.limiter import RateLimiter
from service.api.metrics import Metrics
from service.api.registry import ModelRegistry
from service.api.security import KeyChecker
from service.api.settings import Settings
from service.api.translation import TranslationService


@dataclass
class AppState:
    """Settings, models, the translation service, lifecycle, metrics, keys, rate limits and
    language identifiers of one app."""

    settings: Settings
    registry: ModelRegistry
    translation: TranslationService
    lifecycle: Lifecycle
    metrics: Metrics
    keys: KeyChecker
    limiter: RateLimiter
    detection: Identifiers = field(default_factory=Identifiers)


def get_state(request: Request) -> AppState:
    """Dependency: the app's state."""
    state: AppState = request.app.state.service
    return state
