"""``POST /translate/stream``: the native translation endpoint, one sentence at a time (SSE)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from service.api.errors import responses
from service.api.limiter import count_chars, limit
from service.api.schemas import (
    StreamDone,
    StreamError,
    StreamSentence,
    StreamStart,
    TranslateRequest,
)
from service.api.security import key_from_headers, require_key
from service.api.state import AppState, get_state
from service.api.streaming import MEDIA_TYPE, EventStreamResponse, open_stream

router = APIRouter(tags=["translate"], dependencies=[Depends(require_key)])
EVENTS = (("start", StreamStart, "first: the model serving the request and the number of "
           "sentences"),
          ("sentence", StreamSentence, "one per sentence, in order, as soon as it and every "
           "earlier sentence are done; with its separators, so a text's events concatenate "
           "to its translation"),
          ("done", StreamDone, "last, on success: one joined translation per input text, usage"),
          ("error", StreamError, "last, on a failure after the stream started (deadline, "
           "engine error, shutdown): the status and the error body"))
REF = "#/components/schemas/{model}"  # nested models (Usage, ErrorDetail...) are components


def event_schema(name: str, model: type[BaseModel], about: str) -> dict[str, Any]:
    """One event type: its ``event:`` name and the JSON schema of its ``data:``."""
    data = model.model_json_schema(ref_template=REF)
    data.pop("$defs", None)
    return {"type": "object", "description": f"`{name}`: {about}", "required": ["event", "data"],
            "properties": {"event": {"const": name},
                           "data": {"type": "string", "contentMediaType": "application/json",
                                    "contentSchema": data}}}


def stream_response_doc() -> dict[int | str, dict[str, Any]]:
    """OpenAPI for the 200 answer: ``text/event-stream`` whose items (OpenAPI 3.2
    ``itemSchema``, as FastAPI writes it) are one of the four event types; ``schema`` covers
    the whole stream, an array of such items (as OpenAPI 3.2 reads it, instead of FastAPI's
    default ``{"type": "string"}``)."""
    events = [event_schema(*event) for event in EVENTS]
    item = {"oneOf": events}
    return {200: {"description": "Server-sent events: `event:` and `data:` (JSON) lines, a "
                                 "blank line after each. " + " ".join(
                                     e["description"] + "." for e in events),
                  "content": {MEDIA_TYPE: {"itemSchema": item,
                                           "schema": {"type": "array", "items": item}}}}}


def json_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error responses as ``application/json`` (a ``model`` entry would take the route's
    ``text/event-stream``); the ``ErrorBody`` component comes from the other routes."""
    return {status: {"description": entry["description"], "content": {"application/json": {
        "schema": {"$ref": REF.format(model=entry["model"].__name__)}}}}
        for status, entry in responses(*statuses).items()}


@router.post("/translate/stream", response_class=EventStreamResponse,
             responses={**stream_response_doc(), **json_errors(400, 401, 413, 422, 429, 503)})
async def translate_stream(body: TranslateRequest, request: Request,
                           state: Annotated[AppState, Depends(get_state)]
                           ) -> EventStreamResponse:
    """Translate a multi-sentence text (or a list of texts) and stream each sentence's
    translation as a server-sent event as soon as it and every earlier sentence are done:
    `start`, one `sentence` per sentence, then `done` (joined text, usage) or `error`.
    Same body, limits, key and routing as `POST /translate`; validation, routing, a full queue
    and shutdown are JSON errors before the stream starts."""
    limit(request, state.limiter, api_key=key_from_headers(request),
          chars=count_chars(body.text))
    body, _ = await state.translation.detect_source(body)
    return await open_stream(state.translation, body, request)
