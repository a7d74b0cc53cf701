"""LibreTranslate-compatible routes under ``/libretranslate/``.

Errors here use LibreTranslate's body, ``{"error": "<message>"}``, with our ``code``,
``field``, ``limit`` and ``request_id`` beside it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from service.api import libretranslate as lt
from service.api.errors import responses
from service.api.security import key_from_headers
from service.api.state import AppState, get_state
from service.api.translation import until_disconnected

router = APIRouter(prefix="/libretranslate", tags=["libretranslate"])
State = Annotated[AppState, Depends(get_state)]
schema = lt.LibreRequest.model_json_schema()
BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": schema},
    "application/x-www-form-urlencoded": {"schema": schema}}}}


@router.post("/translate", response_model=lt.LibreResponse, response_model_exclude_none=True,
             openapi_extra=BODY, responses=responses(400, 401, 413, 415, 422, 503, 504,
                                 libretranslate=True))
async def translate(request: Request, state: State) -> lt.LibreResponse:
    """LibreTranslate's `/translate`: `q`, `source` (or `auto`), `target`, `format`,
    `alternatives`, `api_key`; JSON or form-encoded."""
    fields = await lt.read_fields(request)
    key = fields.get("api_key")
    state.keys.check(key if isinstance(key, str) and key else key_from_headers(request))
    body = lt.parse(fields)
    return await until_disconnected(request, lt.translate(state, body))


@router.get("/languages", response_model=list[lt.LibreLanguage])
async def languages(state: State) -> list[lt.LibreLanguage]:
    """LibreTranslate's `/languages`: each served language and its targets (no key needed,
    as in LibreTranslate)."""
    return lt.languages(state.registry)
