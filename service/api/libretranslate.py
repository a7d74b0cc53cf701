"""LibreTranslate compatibility: its request fields and response shapes over our models.

Existing LibreTranslate clients work with the base URL ``http://host:port/libretranslate/``:
``POST translate`` (JSON or form-encoded; ``q`` a string or a list; ``source`` may be
``auto`` when only one source language translates into ``target``; ``format`` ``text`` or
``html``: the document's text is translated and its markup kept, ``service/api/markup.py``)
and ``GET languages``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.datastructures import UploadFile

from service.api.errors import ApiError
from service.api.registry import ModelEntry, ModelRegistry
from service.api.schemas import check_texts_type
from service.api.state import AppState
from service.api.translation import TranslationService

FORMATS = ("text", "html")
FORM_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}
LANGUAGE_NAMES = {"ar": "Arabic", "de": "German", "en": "English", "es": "Spanish",
                  "fr": "French", "it": "Italian", "ja": "Japanese", "nl": "Dutch",
                  "pt": "Portuguese", "ru": "Russian", "zh": "Chinese"}


class LibreRequest(BaseModel):
    """LibreTranslate's ``/translate`` fields (unknown extra fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    q: str | list[str] = Field(description="text or list of texts")
    source: str = Field(default="auto", min_length=1, max_length=16,
                        description="source language code, or `auto`")
    target: str = Field(min_length=1, max_length=16, description="target language code")
    format: str = Field(default="text", description="`text`, or `html`: the text of the "
                        "document is translated, its markup kept as it is")
    alternatives: int = Field(default=0, ge=0, description="number of alternative translations")
    api_key: str | None = Field(default=None, description="API key (also accepted as a header)")

    @field_validator("q", mode="before")
    @classmethod
    def _q_type(cls, value: Any) -> Any:
        return check_texts_type(value, "q")


class DetectedLanguage(BaseModel):
    """LibreTranslate's ``detectedLanguage`` for ``source=auto``."""

    confidence: float
    language: str


class LibreResponse(BaseModel):
    """LibreTranslate's response: strings for a string ``q``, lists for a list ``q``."""

    translatedText: str | list[str]  # LibreTranslate's field names
    alternatives: list[str] | list[list[str]] | None = None
    detectedLanguage: DetectedLanguage | list[DetectedLanguage] | None = None


class LibreLanguage(BaseModel):
    """One entry of ``GET /libretranslate/languages``."""

    code: str
    name: str
    targets: list[str]


async def read_fields(request: Request) -> dict[str, Any]:
    """The raw fields of a JSON or form-encoded body (form ``q`` repeated -> a list)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        return urlencoded_fields(await request.body())
    if ctype in FORM_TYPES:
        try:
            form = await request.form()
        except Exception:
            raise ApiError(400, "malformed_form", "the form body could not be parsed") from None
        fields: dict[str, Any] = {key: value for key, value in form.items()
                                  if not isinstance(value, UploadFile)}
        queries = [v for v in form.getlist("q") if isinstance(v, str)]
        if len(queries) > 1:
            fields["q"] = queries
        return fields
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", f"content type {ctype!r} is not "
                       "supported; send JSON or a form")
    try:
        data = json.loads(await request.body())
    except (ValueError, RecursionError):  # JSONDecodeError, invalid UTF-8, too deep
        raise ApiError(400, "malformed_json", "request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request", "the body must be a JSON object", field="body")
    return data


def urlencoded_fields(body: bytes) -> dict[str, Any]:
    """The fields of a form-encoded body read as UTF-8, raw or percent-encoded (``curl -d``
    sends raw bytes; Starlette's parser would read those as Latin-1); ``q`` repeated -> a
    list. Invalid UTF-8 is a 400."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, encoding="utf-8",
                          errors="strict")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_utf8", "the form body is not valid UTF-8") from None
    fields: dict[str, Any] = dict(pairs)
    queries = [value for name, value in pairs if name == "q"]
    if len(queries) > 1:
        fields["q"] = queries
    return fields


def parse(fields: dict[str, Any]) -> LibreRequest:
    """Validate the fields (422 naming the first bad one, like the native API)."""
    try:
        body = LibreRequest.model_validate(fields)
    except ValidationError as err:
        raise RequestValidationError(err.errors(include_input=False)) from None
    if body.format not in FORMATS:
        raise ApiError(400, "unsupported_format", f"format {body.format!r} is not supported; "
                       f"use one of {list(FORMATS)}", field="format")
    return body


def route(registry: ModelRegistry, source: str, target: str) -> tuple[ModelEntry, bool]:
    """The model for ``source`` -> ``target``; ``auto`` when one source reaches ``target``."""
    if source != "auto":
        return registry.resolve(model=None, source=source, target=target), False
    sources = sorted({src for src, tgt in registry.defaults() if tgt == target})
    if len(sources) != 1:
        why = "no model translates into it" if not sources else f"candidates: {sources}"
        raise ApiError(400, "ambiguous_source", f"source 'auto' cannot be resolved for target "
                       f"{target!r} ({why}); give the source language", field="source",
                       details={"served": registry.served()})
    return registry.resolve(model=None, source=sources[0], target=target), True


async def translate(state: AppState, body: LibreRequest) -> LibreResponse:
    """The LibreTranslate request through the same limits, routing and batching."""
    service: TranslationService = state.translation
    texts = [body.q] if isinstance(body.q, str) else list(body.q)
    service.check_texts(texts, "q")
    entry, detected = route(state.registry, body.source.lower(), body.target.lower())
    wanted = body.alternatives + 1
    if wanted > state.settings.max_hypotheses:
        limit = state.settings.max_hypotheses - 1
        raise ApiError(422, "alternatives_too_large", f"alternatives is {body.alternatives}; "
                       f"the limit is {limit}", field="alternatives", limit=limit)
    options = service.options(beam_size=None, num_hypotheses=wanted, length_penalty=1.0,
                              max_length=None)
    if body.format == "html":
        results = await service.run_html(entry, texts, options, field="q")
    else:
        results = await service.run(entry, texts, options)
    outs = [r.text for r in results]
    others = [[a.text for a in r.alternatives[1:]] for r in results]
    assert entry.pair is not None
    language = DetectedLanguage(confidence=100.0, language=entry.pair[0])
    single = isinstance(body.q, str)
    return LibreResponse(
        translatedText=outs[0] if single else outs,
        alternatives=(others[0] if single else others) if body.alternatives else None,
        detectedLanguage=(language if single else [language] * len(texts)) if detected
        else None)


def languages(registry: ModelRegistry) -> list[LibreLanguage]:
    """Every served language with the languages it translates into."""
    targets: dict[str, set[str]] = {}
    for src, tgt in registry.defaults():
        targets.setdefault(src, set()).add(tgt)
        targets.setdefault(tgt, set())
    return [LibreLanguage(code=code, name=LANGUAGE_NAMES.get(code, code),
                          targets=sorted(targets[code])) for code in sorted(targets)]
