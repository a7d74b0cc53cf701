"""Which bundles exist, which are loaded, and which one serves a request.

Discovery: every directory under ``models_dir`` (the directory itself included) holding a
``model.json`` is a bundle, named by its path relative to ``models_dir`` with ``/`` replaced by
``-`` (``models/transformer-en-fr/int8`` -> ``transformer-en-fr-int8``).

Default per language pair, among the loaded bundles serving it: the first one listed in
``default_models``; otherwise a model the user added (a bundle without the test BLEU that the
packager records, ``metadata.evaluation.beam4.bleu`` in model.json: an exported checkpoint
such as OPUS-MT, or an unpackaged run) before the packaged ones (the shipped demos); then a
float32 bundle before any other; then the best recorded BLEU, then the smallest name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal, Protocol

from inference.bundle import MANIFEST, BundleError, Manifest, read_manifest
from inference.options import DecodeOptions
from inference.translator import Translator
from service.api.batcher import Batcher
from service.api.engine import Engine, TranslatorEngine
from service.api.errors import ApiError
from service.api.iteration_level import IterationLevel
from service.api.request_level import RequestLevel
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

    @property
    def pair(self) -> tuple[str, str] | None:
        """``(source_lang, target_lang)`` once the manifest is known."""
        return (self.manifest.source_lang, self.manifest.target_lang) if self.manifest else None


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

    def defaults(self) -> dict[tuple[str, str], ModelEntry]:
        """The bundle serving each language pair by default (see the module docstring)."""
        preferred = {name: rank for rank, name in enumerate(self.settings.default_models)}
        chosen: dict[tuple[str, str], ModelEntry] = {}
        for entry in self.ready():
            assert entry.pair is not None and entry.manifest is not None
            current = chosen.get(entry.pair)
            if current is None or _rank(entry, preferred) < _rank(current, preferred):
                chosen[entry.pair] = entry
        return chosen

    def served(self) -> dict[str, list[str]]:
        """What is served, for error messages: model names and ``src-tgt`` pairs."""
        return {"models": sorted(e.name for e in self.ready()),
                "pairs": sorted(f"{src}-{tgt}" for src, tgt in self.defaults())}

    def resolve(self, *, model: str | None, source: str | None, target: str | None
                ) -> ModelEntry:
        """The ready bundle for an explicit ``model`` or a ``source``/``target`` pair."""
        if model is not None:
            return self._by_name(model, source, target)
        aliases = self.aliases()
        source, target = aliases.get(source or "", source), aliases.get(target or "", target)
        if not source or not target:
            raise ApiError(422, "missing_route", "give source_lang and target_lang, or model",
                           field="target_lang" if source else "source_lang",
                           details={"served": self.served()})
        entry = self.defaults().get((source, target))
        if entry is None:
            raise ApiError(400, "unsupported_language_pair",
                           f"no model translates {source} to {target}; served pairs: "
                           f"{', '.join(self.served()['pairs']) or 'none'}",
                           field="target_lang", details={"served": self.served()})
        return entry

    def aliases(self) -> dict[str, str]:
        """Full language codes that checkpoints name their languages by (NLLB's
        ``fra_latn``, lower case as requests are) -> the codes bundles are served under."""
        found: dict[str, str] = {}
        for entry in self.ready():
            codes = entry.manifest.metadata.get("language_codes") if entry.manifest else None
            if isinstance(codes, dict):
                found.update((str(full).lower(), str(short)) for short, full in codes.items())
        return found

    def _by_name(self, model: str, source: str | None, target: str | None) -> ModelEntry:
        entry = self.entries.get(model)
        if entry is None or entry.status == "pending":
            raise ApiError(400, "unknown_model", f"no model named {model!r}; served: "
                           f"{', '.join(self.served()['models']) or 'none'}",
                           field="model", details={"served": self.served()})
        if entry.status != "ready":
            raise ApiError(503, "model_unavailable", f"model {model!r} is {entry.status}",
                           field="model", details={"served": self.served()},
                           headers={"Retry-After": "5"})
        src, tgt = entry.pair or ("", "")
        if (source and source != src) or (target and target != tgt):
            raise ApiError(422, "model_language_mismatch", f"model {model!r} translates {src} "
                           f"to {tgt}", field="model", details={"served": self.served()})
        return entry


def _rank(entry: ModelEntry, preferred: dict[str, int]) -> tuple[int, bool, int, float, str]:
    assert entry.manifest is not None
    bleu = recorded_bleu(entry.manifest)
    return (preferred.get(entry.name, len(preferred)), bleu != float("-inf"),
            0 if entry.manifest.dtype == "float32" else 1, -bleu, entry.name)


def recorded_bleu(manifest: Manifest) -> float:
    """The beam-4 test BLEU the packager wrote into model.json, or -inf when there is none."""
    evaluation = manifest.metadata.get("evaluation")
    beam4 = evaluation.get("beam4") if isinstance(evaluation, dict) else None
    bleu = beam4.get("bleu") if isinstance(beam4, dict) else None
    return float(bleu) if isinstance(bleu, int | float) else float("-inf")
