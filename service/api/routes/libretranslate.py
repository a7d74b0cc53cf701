"""LibreTranslate's routes, under ``/libretranslate/`` (and at the root with
``libretranslate_at_root``, see ``service/api/root_mount.py``).

Errors here use LibreTranslate's body, ``{"error": "<message>"}``, with our ``code``,
``field``, ``limit`` and ``request_id`` beside it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from service.api import libre_files as files
from service.api import libretranslate as lt
from service.api.errors import ApiError, responses
from service.api.libre_settings import FrontendSettings, frontend_settings
from service.api.limiter import count_chars, limit
from service.api.security import key_from_headers
from service.api.state import AppState, get_state
from service.api.translation import until_disconnected

PREFIX = "/libretranslate"
router = APIRouter(prefix=PREFIX, tags=["libretranslate"])
State = Annotated[AppState, Depends(get_state)]
ERRORS = responses(400, 403, 413, 415, 429, 503, 504, libretranslate=True)


def body_doc(model: type[BaseModel], *, files_field: bool = False) -> dict[str, Any]:
    """``openapi_extra``: the same fields as JSON, form-encoded or multipart (or the query
    string, which LibreTranslate also reads)."""
    schema = model.model_json_schema()
    form = schema
    if files_field:
        form = {**schema, "properties": {**schema["properties"], "file": {
            "type": "string", "format": "binary", "description": "`.txt` or `.html` file"}},
            "required": ["file", *schema.get("required", [])]}
        return {"requestBody": {"required": True, "content": {"multipart/form-data": {
            "schema": form}}}}
    return {"requestBody": {"required": False, "content": {
        "application/json": {"schema": schema},
        "application/x-www-form-urlencoded": {"schema": form},
        "multipart/form-data": {"schema": form}}}}


class FileRequest(BaseModel):
    """``/translate_file``'s form fields besides ``file``."""

    source: str
    target: str
    api_key: str | None = None


class TranslatedFile(BaseModel):
    """Where to download the translated file."""

    translatedFileUrl: str


class Health(BaseModel):
    """LibreTranslate's ``/health``."""

    status: str


class Suggestion(BaseModel):
    """``/suggest``'s fields (suggestions are off: always a 403)."""

    q: str
    s: str
    source: str
    target: str


async def checked_fields(request: Request, state: AppState) -> dict[str, Any]:
    """The request's fields, after LibreTranslate's key check and the rate limit."""
    fields = await lt.read_fields(request)
    key = fields.get("api_key")
    if key is not None and not isinstance(key, str):
        raise ApiError(400, "invalid_request", "Invalid request: api_key must be a string",
                       field="api_key")
    key = key or key_from_headers(request)
    if state.keys.enabled:
        if not key:
            raise ApiError(400, "missing_api_key", "Please contact the server operator to get "
                           "an API key", field="api_key")
        if not state.keys.accepts(key):
            raise ApiError(403, "invalid_api_key", "Invalid API key", field="api_key")
    upload = fields.get("file")
    chars = upload.size or 0 if isinstance(upload, UploadFile) else count_chars(fields.get("q"))
    limit(request, state.limiter, api_key=key, chars=chars)
    return fields


@router.post("/translate", response_model=lt.LibreResponse, response_model_exclude_none=True,
             openapi_extra=body_doc(lt.LibreRequest), responses=ERRORS)
async def translate(request: Request, state: State) -> lt.LibreResponse:
    """Translate `q` (a string or a list) from `source` (or `auto`) to `target`; `format`
    `text` or `html`; `alternatives`; `api_key`. Fields from JSON, a form or the query."""
    fields = await checked_fields(request, state)
    return await until_disconnected(request, lt.translate(state, fields))


@router.post("/detect", response_model=list[lt.DetectedLanguage],
             openapi_extra=body_doc(lt.DetectRequest), responses=ERRORS)
async def detect(request: Request, state: State) -> list[lt.DetectedLanguage]:
    """The candidate languages of `q` among the served source languages, most likely first
    (confidence 0-100)."""
    fields = await checked_fields(request, state)
    return await lt.detect(state, fields)


@router.get("/languages", response_model=list[lt.LibreLanguage])
async def languages(state: State) -> list[lt.LibreLanguage]:
    """Each served language and its targets (no key needed, as in LibreTranslate)."""
    return lt.languages(state.registry)


@router.get("/frontend/settings", response_model=FrontendSettings)
async def settings(state: State) -> FrontendSettings:
    """LibreTranslate's settings for a web page: limits, key requirement, file formats,
    default languages."""
    return frontend_settings(state)


@router.post("/translate_file", response_model=TranslatedFile,
             openapi_extra=body_doc(FileRequest, files_field=True), responses=ERRORS)
async def translate_file(request: Request, state: State) -> TranslatedFile:
    """Translate a `.txt` or `.html` file; the answer is the URL of the translation, kept
    for `translated_file_ttl_s` seconds."""
    fields = await checked_fields(request, state)
    name = await until_disconnected(
        request, files.translate_file(state, state_files(request), fields))
    url = str(request.base_url).rstrip("/") + f"{path_prefix(request)}/download_file/{name}"
    return TranslatedFile(translatedFileUrl=url)


@router.get("/download_file/{filename}", response_class=Response,
            responses={200: {"content": {"text/plain": {}, "text/html": {}},
                             "description": "the translated file"},
                       **responses(400, libretranslate=True)})
async def download_file(filename: str, request: Request) -> Response:
    """A translated file, as an attachment named like the uploaded one."""
    stored = state_files(request).get(filename)
    return Response(stored.content, media_type=stored.media_type, headers={
        "Content-Disposition": f'attachment; filename="{stored.filename}"'})


@router.post("/suggest", openapi_extra=body_doc(Suggestion), responses=responses(
    403, libretranslate=True))
async def suggest() -> None:
    """Suggestions are off on this server: always LibreTranslate's 403."""
    raise ApiError(403, "suggestions_disabled", "Suggestions are disabled on this server.")


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(state: State) -> JSONResponse:
    """`{"status": "ok"}` once the models are loaded; 503 with the reason before."""
    answer = state.lifecycle.readiness(state.registry, state.settings)
    status = "ok" if answer.ready else answer.reason
    return JSONResponse({"status": status}, status_code=200 if answer.ready else 503)


@router.get("/spec")
async def spec(request: Request) -> dict[str, Any]:
    """The OpenAPI schema of the LibreTranslate routes."""
    schema: dict[str, Any] = dict(request.app.openapi())
    schema["paths"] = {path: item for path, item in schema["paths"].items()
                       if path.startswith(PREFIX + "/")}
    return schema


def state_files(request: Request) -> files.FileStore:
    """The app's store of translated files."""
    store: files.FileStore = request.app.state.translated_files
    return store


def path_prefix(request: Request) -> str:
    """``/libretranslate``, or "" when the request came to the root."""
    return "" if request.scope.get("libretranslate_root") else PREFIX
