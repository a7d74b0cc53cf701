"""The domain call behind both translate routes: check limits, route, batch, assemble.

Nothing here knows about HTTP beyond raising :class:`ApiError` with a status.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from fastapi import Request

from inference.text import Segmented, segment
from inference.translator import Translation
from service.api import markup
from service.api.assembly import combine
from service.api.batcher import (
    BatcherClosedError,
    DeadlineExceededError,
    DecodeOptions,
    QueueFullError,
)
from service.api.cache import TranslationCache
from service.api.detection import Detection, Identifiers
from service.api.errors import ApiError
from service.api.registry import ModelEntry, ModelRegistry
from service.api.routing import Route
from service.api.schemas import (
    AlternativeOut,
    DetectedSource,
    TranslateRequest,
    TranslateResponse,
    TranslationOut,
    Usage,
)
from service.api.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # tab, LF and CR are allowed


@dataclass(frozen=True)
class Options:
    """Validated decoding options of one request."""

    decode: DecodeOptions
    return_scores: bool
    timeout: float


class Prepared(NamedTuple):
    """A checked native request: its texts, the model and pair serving it and its options."""

    texts: list[str]
    route: Route
    options: Options


class TranslationService:
    """Limits, routing and batching for ``/translate`` and ``/libretranslate/translate``."""

    def __init__(self, registry: ModelRegistry, settings: Settings, *,
                 cache: TranslationCache | None = None,
                 identifiers: Identifiers | None = None) -> None:
        self.registry = registry
        self.settings = settings
        self.cache = cache
        self.identifiers = identifiers or Identifiers()

    def check_texts(self, texts: list[str], field: str) -> None:
        """Raise a 4xx ``ApiError`` naming the field and the limit for any violation."""
        s = self.settings
        if len(texts) > s.max_texts:
            raise ApiError(422, "too_many_texts", f"{len(texts)} texts in one request; the "
                           f"limit is {s.max_texts}", field=field, limit=s.max_texts)
        for index, text in enumerate(texts):
            self._check_text(text, f"{field}[{index}]" if len(texts) > 1 else field)
        total = sum(len(text) for text in texts)
        if total > s.max_total_chars:
            raise ApiError(422, "request_too_long", f"{total} characters in one request; the "
                           f"limit is {s.max_total_chars}", field=field, limit=s.max_total_chars)

    def _check_text(self, text: str, name: str) -> None:
        limit = self.settings.max_chars_per_text
        if len(text) > limit:
            raise ApiError(422, "text_too_long", f"{name} has {len(text)} characters; the "
                           f"limit is {limit}", field=name, limit=limit)
        bad = CONTROL.search(text)
        if bad:
            raise ApiError(422, "invalid_characters", f"{name} contains the control character "
                           f"U+{ord(bad.group()):04X} at position {bad.start()}", field=name)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ApiError(422, "invalid_characters", f"{name} is not valid Unicode (lone "
                           f"surrogate at position {err.start})", field=name) from None

    def options(self, *, beam_size: int | None, num_hypotheses: int, length_penalty: float,
                max_length: int | None, return_scores: bool = True,
                timeout: float | None = None, entry: ModelEntry | None = None) -> Options:
        """Decoding options within the configured limits; without ``beam_size``: the
        ``default_beam_size`` setting when set, else ``entry``'s checkpoint ``num_beams``."""
        s = self.settings
        beam = default_beam(s, entry) if beam_size is None else beam_size
        beam = max(beam, num_hypotheses) if beam_size is None else beam
        for name, value, limit in (("beam_size", beam, s.max_beam_size),
                                   ("num_hypotheses", num_hypotheses, s.max_hypotheses),
                                   ("max_length", max_length or 0, s.max_length_limit)):
            if value > limit:
                raise ApiError(422, f"{name}_too_large", f"{name} is {value}; the limit is "
                               f"{limit}", field=name, limit=limit)
        if num_hypotheses > beam:
            raise ApiError(422, "invalid_request", f"num_hypotheses ({num_hypotheses}) must not "
                           f"exceed beam_size ({beam})", field="num_hypotheses", limit=beam)
        decode = DecodeOptions(beam_size=beam, num_hypotheses=num_hypotheses,
                               length_penalty=length_penalty, max_length=max_length)
        deadline = min(timeout or s.request_timeout_s, s.request_timeout_s)
        return Options(decode, return_scores, deadline)

    async def run(self, route: Route, texts: list[str], options: Options
                  ) -> list[Translation]:
        """Translations of ``texts`` in order: every text cut into sentences
        (:func:`segment_texts`), all the sentences of the request in one batch, each text put
        back together between its own separators; a text without sentences (blank, digits)
        comes back as it is, finish reason ``empty``, without the model."""
        layouts = await asyncio.to_thread(segment_texts, route.source, texts)
        sources = [source for layout in layouts for source in layout.sources]
        done = await self.run_sentences(route, sources, options) if sources else []
        results = []
        start = 0
        for layout in layouts:
            results.append(combine(layout.join, done[start : start + len(layout.sentences)]))
            start += len(layout.sentences)
        return results

    async def run_sentences(self, route: Route, sentences: list[str], options: Options
                            ) -> list[Translation]:
        """``sentences`` translated: those in the cache from it, the others in one batcher
        request (then cached); a batcher failure as an ``ApiError``."""
        results: list[Translation | None] = [None] * len(sentences)
        todo = list(range(len(sentences)))
        name = route.entry.name
        if self.cache is not None:
            todo = self._from_cache(route, sentences, options.decode, todo, results)
        if todo:
            done = await self._submit(route, [sentences[i] for i in todo], options)
            for index, result in zip(todo, done, strict=True):
                results[index] = result
                if self.cache is not None:
                    self.cache.put(name, options.decode, sentences[index], result,
                                   pair=route.pair)
        return [result for result in results if result is not None]

    async def _submit(self, route: Route, sentences: list[str], options: Options
                      ) -> list[Translation]:
        """One batcher request for ``sentences``; its failure as an ``ApiError``."""
        entry = route.entry
        assert entry.batcher is not None
        try:
            return await entry.batcher.submit(sentences, options.decode,
                                              timeout=options.timeout, pair=route.pair)
        except Exception as err:
            raise batch_error(err, entry.name, options.timeout) from None

    def _from_cache(self, route: Route, texts: list[str], options: DecodeOptions,
                    todo: list[int], results: list[Translation | None]) -> list[int]:
        """Fill ``results`` from the cache; the indices still to translate."""
        assert self.cache is not None
        missing = []
        for index in todo:
            cached = self.cache.get(route.entry.name, options, texts[index].strip(),
                                    pair=route.pair)
            if cached is None:
                missing.append(index)
            else:
                results[index] = cached
        return missing

    async def run_html(self, route: Route, documents: list[str], options: Options, *,
                       field: str) -> list[Translation]:
        """:meth:`run` for HTML documents: every text run of every document in one batch,
        each document's result merged from its runs' (``markup.merge``); a document the
        parser cannot read is a 400 naming it (``field``, indexed for a list)."""
        parsed = await asyncio.to_thread(parse_documents, documents, field)
        results = await self.run(route, [s for document in parsed for s in document.sources],
                                 options)
        merged = []
        start = 0
        for document in parsed:
            merged.append(markup.merge(document, results[start : start + len(document.runs)]))
            start += len(document.runs)
        return merged

    def prepare(self, body: TranslateRequest) -> Prepared:
        """Check the texts, route and options of a native request (4xx ``ApiError``)."""
        texts = [body.text] if isinstance(body.text, str) else list(body.text)
        self.check_texts(texts, "text")
        route = self.registry.routes().resolve(model=body.model, source=body.source_lang,
                                               target=body.target_lang)
        options = self.options(beam_size=body.beam_size, num_hypotheses=body.num_hypotheses,
                               length_penalty=body.length_penalty, max_length=body.max_length,
                               return_scores=body.return_scores, timeout=body.timeout,
                               entry=route.entry)
        return Prepared(texts, route, options)

    async def detect_source(self, body: TranslateRequest
                            ) -> tuple[TranslateRequest, Detection | None]:
        """``source_lang`` omitted or ``auto`` (and no ``model``): the language of the texts
        among the served sources that translate into ``target_lang``, and the request with it
        (unchanged otherwise)."""
        routes = self.registry.routes()
        source = lang(body.source_lang)
        target = routes.canonical(body.target_lang)
        if body.model is not None or source not in (None, "auto") or target is None:
            return body, None
        texts = [body.text] if isinstance(body.text, str) else list(body.text)
        self.check_texts(texts, "text")
        sources = routes.sources(target)
        if not sources:
            targets = routes.targets()
            raise ApiError(400, "unsupported_language_pair", f"no model translates into "
                           f"{target}; target languages: {', '.join(targets) or 'none'}",
                           field="target_lang", details={"languages": targets})
        identifier = self.identifiers.identifier(sources)
        found = await asyncio.to_thread(identifier.best, "\n".join(texts))
        return body.model_copy(update={"source_lang": found.language}), found

    async def translate(self, body: TranslateRequest) -> TranslateResponse:
        """``POST /translate``."""
        body, detected = await self.detect_source(body)
        texts, route, options = self.prepare(body)
        if body.format == "html":
            results = await self.run_html(route, texts, options, field="text")
        else:
            results = await self.run(route, texts, options)
        outs = [to_out(result, options.return_scores) for result in results]
        return TranslateResponse(
            model=route.entry.name, source_lang=route.source, target_lang=route.target,
            detected_language=DetectedSource(language=detected.language,
                                             confidence=detected.confidence)
            if detected else None,
            translations=outs, usage=Usage(texts=len(outs),
                                           source_tokens=sum(o.source_tokens for o in outs),
                                           target_tokens=sum(o.target_tokens for o in outs)))


def default_beam(settings: Settings, entry: ModelEntry | None) -> int:
    """The beam of a request without one: the operator's ``default_beam_size`` when set,
    else the checkpoint's generation config (``metadata.generation.num_beams``), else the
    setting's default."""
    generation = entry.manifest.metadata.get("generation") if entry and entry.manifest else None
    beams = generation.get("num_beams") if isinstance(generation, dict) else None
    if "default_beam_size" in settings.model_fields_set or not isinstance(beams, int):
        return settings.default_beam_size
    return beams


def batch_error(err: Exception, model: str, timeout: float) -> ApiError:
    """The API error for a batcher failure: queue full or shutting down (503), deadline
    (504), anything else an engine error (500, logged with its traceback)."""
    if isinstance(err, QueueFullError):
        return ApiError(503, "queue_full", f"model {model}: {err}; retry shortly",
                        limit=err.capacity, headers={"Retry-After": str(err.retry_after)})
    if isinstance(err, DeadlineExceededError):
        return ApiError(504, "deadline_exceeded", f"model {model}: {err}", field="timeout",
                        limit=timeout)
    if isinstance(err, BatcherClosedError):
        return ApiError(503, "shutting_down", "the server is shutting down",
                        headers={"Retry-After": "5"})
    log.error("translation failed", exc_info=err, extra={"fields": {"model": model}})
    return ApiError(500, "engine_error", "the translation engine failed")


def segment_texts(language: str, texts: Sequence[str]) -> list[Segmented]:
    """Each text cut into sentences and separators by the rules of its source ``language``
    (``inference/text.py``); callers run it in a worker thread: thousands of short lines take
    tens of milliseconds."""
    return [segment(text, language=language) for text in texts]


def parse_documents(documents: list[str], field: str) -> list[markup.Document]:
    """:func:`markup.parse_html` of each document; a 400 ``invalid_html`` naming the first
    unreadable one."""
    parsed = []
    for index, document in enumerate(documents):
        try:
            parsed.append(markup.parse_html(document))
        except markup.MarkupError as err:
            name = f"{field}[{index}]" if len(documents) > 1 else field
            raise ApiError(400, "invalid_html", f"{name}: {err}; send it with format 'text'",
                           field=name) from None
    return parsed


def lang(code: str | None) -> str | None:
    """A request's language code, normalised (trimmed, lower case)."""
    return code.strip().lower() if code else None


def _score(value: float, keep: bool) -> float | None:
    return value if keep and math.isfinite(value) else None


def to_out(result: Translation, return_scores: bool) -> TranslationOut:
    """Engine result -> response entry (non-finite or unwanted scores become null)."""
    return TranslationOut(
        text=result.text, score=_score(result.score, return_scores),
        finish_reason=result.finish_reason, truncated=result.truncated,
        alternatives=[AlternativeOut(text=a.text, score=_score(a.score, return_scores))
                      for a in result.alternatives],
        source_tokens=result.source_tokens, target_tokens=result.target_tokens)


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it (which drops its queued batch work) if the client
    disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    raise ApiError(499, "client_closed_request", "the client disconnected")


async def wait_disconnected(request: Request) -> None:
    """Return when the server reports the client gone (the body was already read)."""
    while (await request.receive())["type"] != "http.disconnect":
        await asyncio.sleep(0.01)  # never spin on a server that answers at once
