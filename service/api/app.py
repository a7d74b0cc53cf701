"""The app factory: ``create_app(settings)`` wires settings, models, routes and middleware.

The lifespan discovers the bundles and loads them in the background (``/health/live`` answers
at once; ``/health/ready`` says 503 "loading" until every model is loaded and warmed up). On
shutdown it waits for in-flight requests (up to ``drain_timeout_s``) and then drains every
model's batcher.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from service.api.cache import TranslationCache
from service.api.detection import Identifiers
from service.api.errors import install_error_handlers
from service.api.libre_files import FileStore
from service.api.lifecycle import Lifecycle
from service.api.limiter import RateLimiter
from service.api.metrics import Metrics
from service.api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from service.api.registry import Loader, ModelRegistry, load_translator
from service.api.root_mount import RootMountMiddleware
from service.api.routes import libretranslate, ops, page, stream, translate
from service.api.security import KeyChecker
from service.api.settings import Settings
from service.api.state import AppState
from service.api.translation import TranslationService

log = logging.getLogger(__name__)
DESCRIPTION = """Neural machine translation over exported ONNX bundles, with cross-request
dynamic batching. Every error has the body `{"error": {"code", "message", "field", "limit",
"request_id", "details"}}` (LibreTranslate routes: `{"error": "<message>", "code", ...}`)."""


def build_cache(settings: Settings, metrics: Metrics) -> TranslationCache | None:
    """The translation cache with its metrics, or None when ``cache_max_entries`` is 0."""
    if not settings.cache_max_entries:
        return None
    cache = TranslationCache(max_entries=settings.cache_max_entries,
                             max_bytes=settings.cache_max_bytes, on_lookup=metrics.observe_cache)
    metrics.track_cache(lambda: cache.entries, lambda: cache.bytes)
    return cache


def build_state(settings: Settings, loader: Loader) -> AppState:
    """The objects one app holds."""
    metrics = Metrics()
    registry = ModelRegistry(settings, loader, on_batch=metrics.observe_batch)
    cache = build_cache(settings, metrics)
    identifiers = Identifiers()
    limiter = RateLimiter(requests_per_minute=settings.rate_limit_requests_per_minute,
                          chars_per_minute=settings.rate_limit_chars_per_minute,
                          trusted_proxies=settings.trusted_proxies,
                          by_key=bool(settings.key_hashes()))
    return AppState(settings=settings, registry=registry,
                    translation=TranslationService(registry, settings, cache=cache,
                                                   identifiers=identifiers),
                    lifecycle=Lifecycle(), metrics=metrics,
                    keys=KeyChecker(settings.key_hashes()), limiter=limiter,
                    detection=identifiers)


def finish_startup(state: AppState) -> None:
    """After loading: metrics for the loaded models, then the lifecycle says ready or
    failed (strict policy and a failed bundle, or no bundle at all)."""
    settings, registry, lifecycle = state.settings, state.registry, state.lifecycle
    for entry in registry.ready():
        assert entry.engine is not None and entry.batcher is not None
        state.metrics.track_model(entry.name, entry.engine.provider,
                                  entry.engine.manifest.dtype, entry.batcher.depth_of)
    if lifecycle.draining:
        return
    problem = None
    if not registry.entries:
        problem = f"no bundle (directory with model.json) under {settings.models_dir}"
    elif registry.failed() and settings.load_policy == "strict":
        problem = "; ".join(f"{e.name}: {e.error}" for e in registry.failed())
    if problem:
        lifecycle.phase, lifecycle.failure = "failed", problem
        log.error("startup failed", extra={"fields": {"reason": problem}})
    else:
        lifecycle.phase = "ready"
        log.info("ready", extra={"fields": {"models": [e.name for e in registry.ready()]}})


async def load_models(state: AppState) -> None:
    """Background task of the lifespan; an unexpected error fails startup visibly. Once
    ready, the language detection models of the served sources are loaded."""
    try:
        await state.registry.load_all()
        finish_startup(state)
    except Exception as err:
        log.exception("loading failed")
        state.lifecycle.phase, state.lifecycle.failure = "failed", f"{type(err).__name__}: {err}"
        return
    try:
        await asyncio.to_thread(state.detection.warm, state.registry.routes().languages)
    except Exception:
        log.exception("language detection could not be prepared; it loads on first use")


async def stop(state: AppState, loading: asyncio.Task[None]) -> None:
    """Drain: wait for in-flight requests, then for every batcher, within the drain timeout."""
    timeout = state.settings.drain_timeout_s
    await state.lifecycle.wait_drained(timeout)
    if not loading.done():
        loading.cancel()
        with suppress(asyncio.CancelledError):
            await loading
    started = state.lifecycle.drain_started or time.monotonic()
    remaining = max(0.5, timeout - (time.monotonic() - started))
    await state.registry.close(remaining)
    log.info("stopped", extra={"fields": {"in_flight": state.lifecycle.in_flight}})


def make_lifespan(state: AppState) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The lifespan: background loading on startup, draining on shutdown."""
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.registry.discover()
        loading = asyncio.create_task(load_models(state), name="load-models")
        try:
            yield
        finally:
            await stop(state, loading)

    return lifespan


def create_app(settings: Settings | None = None, *, loader: Loader | None = None) -> FastAPI:
    """A new app; ``settings`` default to the environment, ``loader`` to ONNX Runtime."""
    settings = settings or Settings()
    state = build_state(settings, loader or load_translator)
    app = FastAPI(title="seq2seq-serve translation API", version="0.1.0",
                  description=DESCRIPTION, lifespan=make_lifespan(state))
    app.state.service = state
    app.state.translated_files = FileStore(max_bytes=settings.translated_files_max_bytes,
                                           ttl_s=settings.translated_file_ttl_s)
    install_error_handlers(app)
    for module in (translate, stream, ops, libretranslate):
        app.include_router(module.router)
    if settings.ui:
        page.install(app)
    if settings.libretranslate_at_root:
        app.add_middleware(RootMountMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"])
    app.add_middleware(RequestContextMiddleware, lifecycle=state.lifecycle,
                       metrics=state.metrics)
    return app
