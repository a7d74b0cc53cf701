"""LibreTranslate compatibility: its request fields, response shapes and error texts.

Existing LibreTranslate clients work with the base URL ``http://host:port/libretranslate/``
(or the root, with ``libretranslate_at_root``). Fields are read as LibreTranslate reads them:
from the query string and from a JSON, form-encoded or multipart body (the body wins). Errors
are LibreTranslate's ``{"error": "<text>"}`` with its status codes (400 for a missing or bad
parameter, 403 for a wrong key, 429 to slow down); ``code``, ``field`` and ``limit`` stand
beside ``error``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from inference.translator import Translation
from service.api.detection import LINGUA_CODES, Detection
from service.api.errors import ApiError
from service.api.registry import ModelRegistry
from service.api.routing import Route, Routes
from service.api.state import AppState

FORMATS = ("text", "html")
SHORT_TEXT = 40  # LibreTranslate detects a shorter text from all texts of the request together


class LibreRequest(BaseModel):
    """LibreTranslate's ``/translate`` fields (for the OpenAPI schema; unknown ones ignored)."""

    model_config = ConfigDict(extra="ignore")

    q: str | list[str] = Field(description="text or list of texts")
    source: str = Field(description="source language code, or `auto` to detect it")
    target: str = Field(description="target language code")
    format: str = Field(default="text", description="`text`, or `html`: the text of the "
                        "document is translated, its markup kept as it is")
    alternatives: int = Field(default=0, ge=0, description="number of alternative translations")
    api_key: str | None = Field(default=None, description="API key (also accepted in the query "
                                "string, `Authorization: Bearer` or `X-API-Key`)")


class DetectRequest(BaseModel):
    """LibreTranslate's ``/detect`` fields."""

    q: str = Field(description="text whose language to detect")
    api_key: str | None = Field(default=None, description="API key")


class DetectedLanguage(BaseModel):
    """A detected language; ``confidence`` from 0 to 100, as LibreTranslate gives it."""

    confidence: float
    language: str


class LibreResponse(BaseModel):
    """LibreTranslate's response: strings for a string ``q``, lists for a list ``q``."""

    translatedText: str | list[str]  # LibreTranslate's field names
    alternatives: list[str] | list[list[str]] | None = None
    detectedLanguage: DetectedLanguage | list[DetectedLanguage] | None = None


class LibreLanguage(BaseModel):
    """One entry of ``GET /languages``."""

    code: str
    name: str
    targets: list[str]


def language_fields(state: AppState, fields: dict[str, Any]) -> tuple[str, str]:
    """``source`` and ``target``, required, as the bundles serve them (a checkpoint's full
    code, NLLB's ``fra_Latn``, stands for ``fr``)."""
    routes = state.registry.routes()
    source, target = (routes.canonical(text_field(fields, name)) for name in ("source", "target"))
    assert source is not None and target is not None  # text_field refuses empty values
    return source, target


def missing(name: str) -> ApiError:
    """LibreTranslate's 400 for an absent or empty parameter."""
    return ApiError(400, "missing_parameter", f"Invalid request: missing {name} parameter",
                    field=name)


async def read_fields(request: Request) -> dict[str, Any]:
    """The query string's fields overlaid with the body's (JSON, form or multipart; a
    repeated ``q`` is a list; a file of a multipart body stays an ``UploadFile``)."""
    fields: dict[str, Any] = pairs_to_fields(list(request.query_params.multi_items()))
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if ctype == "application/x-www-form-urlencoded":
        return {**fields, **urlencoded_fields(body)}
    if ctype == "multipart/form-data":
        try:
            form = await request.form()
        except Exception:
            raise ApiError(400, "malformed_form", "Invalid request: the form body could not be "
                           "parsed") from None
        return {**fields, **pairs_to_fields(list(form.multi_items()))}
    if not body.strip():
        return fields
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", f"content type {ctype!r} is not "
                       "supported; send JSON or a form")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError, invalid UTF-8, too deep
        raise ApiError(400, "malformed_json", "Invalid JSON format") from None
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_json", "Invalid JSON format", field="body")
    return {**fields, **data}


def pairs_to_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Name/value pairs -> fields; ``q`` given more than once becomes a list."""
    fields: dict[str, Any] = dict(pairs)
    queries = [value for name, value in pairs if name == "q"]
    if len(queries) > 1:
        fields["q"] = queries
    return fields


def urlencoded_fields(body: bytes) -> dict[str, Any]:
    """The fields of a form-encoded body read as UTF-8, raw or percent-encoded (``curl -d``
    sends raw bytes; Starlette's parser would read those as Latin-1). Invalid UTF-8 is a 400."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, encoding="utf-8",
                          errors="strict")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_utf8", "the form body is not valid UTF-8") from None
    return pairs_to_fields(list(pairs))


def text_field(fields: dict[str, Any], name: str) -> str:
    """A required string parameter (400 naming it when absent, empty or not a string)."""
    value = fields.get(name)
    if isinstance(value, UploadFile) or not value:
        raise missing(name)
    if not isinstance(value, str):
        raise ApiError(400, "invalid_parameter", f"Invalid request: {name} must be a string",
                       field=name)
    return value


def texts_field(fields: dict[str, Any]) -> list[str] | str:
    """``q``: a non-empty string or a list of strings."""
    q = fields.get("q")
    if not q or isinstance(q, UploadFile):
        raise missing("q")
    if isinstance(q, list):
        for index, item in enumerate(q):
            if not isinstance(item, str):
                raise ApiError(400, "invalid_parameter", f"Invalid request: q[{index}] must "
                               "be a string", field=f"q[{index}]")
    elif not isinstance(q, str):
        raise ApiError(400, "invalid_parameter", "Invalid request: q must be a string or a "
                       "list of strings", field="q")
    return q


def alternatives_field(fields: dict[str, Any], limit: int) -> int:
    """``alternatives``: 0 to ``limit``."""
    value = fields.get("alternatives", 0)
    try:
        count = int(value or 0)
    except (TypeError, ValueError):
        count = -1
    if isinstance(value, bool) or not 0 <= count <= limit:
        raise ApiError(400, "invalid_parameter", f"Invalid request: alternatives must be an "
                       f"integer from 0 to {limit}", field="alternatives", limit=limit)
    return count


def check_size(texts: list[str], state: AppState) -> None:
    """LibreTranslate's batch and character limits, then ours per text (length, control
    characters)."""
    s = state.settings
    if len(texts) > s.max_texts:
        raise ApiError(400, "too_many_texts", f"Invalid request: request ({len(texts)}) "
                       f"exceeds text limit ({s.max_texts})", field="q", limit=s.max_texts)
    chars = sum(len(text) for text in texts)
    if chars > s.max_total_chars:
        raise ApiError(400, "request_too_long", f"Invalid request: request ({chars}) exceeds "
                       f"text limit ({s.max_total_chars})", field="q", limit=s.max_total_chars)
    state.translation.check_texts(texts, "q")


def language_name(code: str) -> str:
    """English name of a language code, as lingua names its 75 languages (the code itself
    for the others)."""
    language = LINGUA_CODES.get(code)
    return language.name.title() if language is not None else code


def check_language(routes: Routes, code: str, name: str) -> None:
    """LibreTranslate's 400 ``<code> is not supported`` for a language no model serves;
    ``details.languages`` lists those served."""
    if not routes.known(code):
        raise ApiError(400, "unsupported_language", f"{code} is not supported", field=name,
                       details={"languages": sorted({*routes.sources(), *routes.targets()})})


def route_for(routes: Routes, source: str, target: str) -> Route:
    """The route for ``source`` -> ``target``, or LibreTranslate's 400 naming both (and
    ``details.languages``: the targets of ``source``)."""
    entry = routes.choose(source, target)
    if entry is None:
        raise ApiError(400, "unsupported_language_pair", f"{language_name(target)} ({target}) "
                       f"is not available as a target language from {language_name(source)} "
                       f"({source})", field="target",
                       details={"languages": routes.targets(source)})
    return Route(entry, source, target)


def as_detected(found: Detection) -> DetectedLanguage:
    """A detection in LibreTranslate's shape (confidence in percent, two decimals)."""
    return DetectedLanguage(confidence=round(found.confidence * 100, 2), language=found.language)


async def detect_sources(state: AppState, texts: list[str], target: str) -> list[Detection]:
    """The source language of each text among those that translate into ``target``; a text
    of at most ``SHORT_TEXT`` characters gets the detection of all texts together."""
    identifier = state.detection.identifier(state.registry.routes().sources(target))
    overall = None
    if any(len(text) <= SHORT_TEXT for text in texts):
        overall = await asyncio.to_thread(identifier.best, "\n".join(texts))
    found = []
    for text in texts:
        found.append(overall if overall is not None and len(text) <= SHORT_TEXT
                     else await asyncio.to_thread(identifier.best, text))
    return found


async def run_grouped(state: AppState, texts: list[str], sources: list[str], target: str,
                      *, html: bool, alternatives: int) -> list[Translation]:
    """Translate each text with the model of its source language, one batch per source, with
    that model's default beam (its checkpoint's ``num_beams``, see ``default_beam``)."""
    service = state.translation
    routes = state.registry.routes()
    results: list[Translation | None] = [None] * len(texts)
    for source in sorted(set(sources)):
        route = route_for(routes, source, target)
        options = service.options(beam_size=None, num_hypotheses=alternatives + 1,
                                  length_penalty=1.0, max_length=None, entry=route.entry)
        indices = [i for i, src in enumerate(sources) if src == source]
        group = [texts[i] for i in indices]
        done = (await service.run_html(route, group, options, field="q") if html
                else await service.run(route, group, options))
        for index, result in zip(indices, done, strict=True):
            results[index] = result
    return [result for result in results if result is not None]


async def translate(state: AppState, fields: dict[str, Any]) -> LibreResponse:
    """LibreTranslate's ``/translate`` over our limits, routing and batching."""
    q = texts_field(fields)
    source, target = language_fields(state, fields)
    texts = [q] if isinstance(q, str) else list(q)
    check_size(texts, state)
    text_format = fields.get("format") or "text"
    if text_format not in FORMATS:
        raise ApiError(400, "unsupported_format", f"{text_format} format is not supported",
                       field="format")
    alternatives = alternatives_field(fields, state.settings.max_hypotheses - 1)
    routes = state.registry.routes()
    check_language(routes, target, "target")
    detected: list[Detection] | None = None
    if source == "auto":
        detected = await detect_sources(state, texts, target)
        sources = [found.language for found in detected]
    else:
        check_language(routes, source, "source")
        sources = [source] * len(texts)
    results = await run_grouped(state, texts, sources, target, html=text_format == "html",
                                alternatives=alternatives)
    return response(results, single=isinstance(q, str), alternatives=alternatives,
                    detected=detected)


def response(results: list[Translation], *, single: bool, alternatives: int,
             detected: list[Detection] | None) -> LibreResponse:
    """Strings for one text, lists for a list; alternatives and detections only when asked."""
    outs = [result.text for result in results]
    others = [[a.text for a in result.alternatives[1:]] for result in results]
    languages = [as_detected(found) for found in detected] if detected else None
    return LibreResponse(
        translatedText=outs[0] if single else outs,
        alternatives=(others[0] if single else others) if alternatives else None,
        detectedLanguage=(languages[0] if single else languages) if languages else None)


async def detect(state: AppState, fields: dict[str, Any]) -> list[DetectedLanguage]:
    """LibreTranslate's ``/detect``: the candidate languages of ``q``, most likely first."""
    q = texts_field(fields)
    texts = [q] if isinstance(q, str) else q
    check_size(texts, state)
    identifier = state.detection.identifier(state.registry.routes().sources())
    found = await asyncio.to_thread(identifier.detect, "\n".join(texts))
    return [as_detected(candidate) for candidate in found]


def languages(registry: ModelRegistry) -> list[LibreLanguage]:
    """Every served language with the languages it translates into."""
    return [LibreLanguage(code=code, name=language_name(code), targets=targets)
            for code, targets in registry.routes().languages.items()]
