"""Which bundles exist and which are loaded; :meth:`ModelRegistry.routes` says which one
serves a request (``service/api/routing.py``).

Discovery: every directory under ``models_dir`` (the directory itself included) holding a
``model.json`` is a bundle, named by its path relative to ``models_dir`` with ``/`` replaced by
``-`` (``models/transformer-en-fr/int8`` -> ``transformer-en-fr-int8``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal, Protocol

from inference.bundle import MANIFEST, BundleError, Manifest, read_manifest
from inference.languages import Languages
from inference.options import DecodeOptions
from inference.translator import Translator
from service.api.batcher import Batcher
from service.api.engine import Engine, TranslatorEngine
from service.api.iteration_level import IterationLevel
from service.api.request_level import RequestLevel
from service.api.routing import Routes
from service.api.scheduling import BatchReport, Strategy
from service.api.settings import Settings

log = logging.getLogger(__name__)
Status = Literal["pending", "loading", "ready", "failed"]
WARMUP_TEXT = "Hello, world."


class LoadedModel(Engine, Protocol):
    """An engine plus what ``/models`` reports about it."""

    manifest: Manifest
    provider: str


Loader = Callable[[Path, Settings], LoadedModel]


def load_translator(path: Path, settings: Settings) -> LoadedModel:
    """The default loader: an ONNX Runtime :class:`Translator` over the bundle."""
    translator = Translator.load(path, providers=settings.providers or None,
                                 threads=settings.threads, require_gpu=settings.require_gpu,
                                 max_batch_tokens=settings.max_batch_tokens)
    return TranslatorEngine(translator)


@dataclass(eq=False)
class ModelEntry:
    """One discovered bundle and its state."""

    name: str
    path: Path
    manifest: Manifest | None = None
    status: Status = "pending"
    error: str | None = None
    engine: LoadedModel | None = None
    batcher: Batcher | None = None

    _languages: tuple[Manifest, Languages] | None = field(default=None, init=False, repr=False)

    @property
    def languages(self) -> Languages:
        """The pairs it serves (``inference/languages.py``); the manifest must be known."""
        assert self.manifest is not None
        if self._languages is None or self._languages[0] is not self.manifest:
            self._languages = (self.manifest, Languages.of(self.manifest))
        return self._languages[1]


def discover(models_dir: Path) -> list[ModelEntry]:
    """Every bundle under ``models_dir``, sorted by name; unreadable manifests are failed."""
    entries = []
    for manifest_path in sorted(models_dir.rglob(MANIFEST)):
        directory = manifest_path.parent
        relative = directory.relative_to(models_dir).as_posix()
        name = models_dir.resolve().name if relative == "." else relative.replace("/", "-")
        entry = ModelEntry(name=name, path=directory)
        try:
            entry.manifest = read_manifest(directory)
        except BundleError as err:
            entry.status, entry.error = "failed", str(err)
        entries.append(entry)
    return sorted(entries, key=lambda e: e.name)


class ModelRegistry:
    """Loads the discovered bundles, starts their batchers and routes requests to them."""

    def __init__(self, settings: Settings, loader: Loader = load_translator,
                 on_batch: Callable[[str, BatchReport], None] | None = None) -> None:
        self.settings = settings
        self.loader = loader
        self.on_batch = on_batch
        self.entries: dict[str, ModelEntry] = {}

    def discover(self) -> None:
        """Find the bundles (cheap: manifests only)."""
        self.entries = {entry.name: entry for entry in discover(self.settings.models_dir)}

    async def load_all(self) -> None:
        """Load, warm up and start every bundle, one at a time, off the event loop."""
        for entry in self.entries.values():
            if entry.status == "pending":
                await self._load(entry)

    async def _load(self, entry: ModelEntry) -> None:
        entry.status = "loading"
        try:
            engine = await asyncio.to_thread(self._load_and_warm, entry.path)
        except Exception as err:  # BundleError, ProviderError, ONNX Runtime's, tokenizer's...
            entry.status, entry.error = "failed", f"{type(err).__name__}: {err}"
            log.error("model failed to load", extra={"fields": {"model": entry.name,
                                                                "error": entry.error}})
            return
        entry.engine, entry.manifest = engine, engine.manifest
        report = partial(self.on_batch, entry.name) if self.on_batch else None
        entry.batcher = Batcher(self._strategy_for(entry.name, engine),
                                queue_size=self.settings.queue_size, name=entry.name,
                                on_batch=report)
        entry.batcher.start()
        entry.status = "ready"
        log.info("model ready", extra={"fields": {"model": entry.name,
                                                  "provider": engine.provider}})

    def _strategy_for(self, name: str, engine: LoadedModel) -> Strategy:
        """The scheduling the ``batching`` setting asks for, when the model supports it."""
        s = self.settings
        if s.batching == "continuous":
            loop = engine.decode_loop()
            if loop is not None:
                return IterationLevel(engine, loop, max_batch_tokens=s.max_batch_tokens)
            log.warning("continuous batching unavailable, using request-level batching",
                        extra={"fields": {"model": name, "reason": "the bundle cannot join "
                                          "running batches; re-export it"}})
        return RequestLevel(engine, max_batch_tokens=s.max_batch_tokens,
                            max_wait_s=s.max_wait_ms / 1000)

    def _load_and_warm(self, path: Path) -> LoadedModel:
        engine = self.loader(path, self.settings)
        engine.translate([WARMUP_TEXT], DecodeOptions(beam_size=self.settings.default_beam_size))
        return engine

    async def close(self, timeout: float) -> None:
        """Drain every batcher (finishing queued work up to ``timeout``)."""
        batchers = [e.batcher for e in self.entries.values() if e.batcher is not None]
        await asyncio.gather(*(batcher.close(timeout) for batcher in batchers))

    def ready(self) -> list[ModelEntry]:
        """Bundles serving requests."""
        return [entry for entry in self.entries.values() if entry.status == "ready"]

    def failed(self) -> list[ModelEntry]:
        """Bundles that could not be loaded."""
        return [entry for entry in self.entries.values() if entry.status == "failed"]

    def routes(self) -> Routes:
        """The routing view of the bundles now (``service/api/routing.py``)."""
        return Routes(self.entries, self.settings.default_models)
