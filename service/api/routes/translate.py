"""``POST /translate``: the native translation endpoint."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from service.api.errors import responses
from service.api.limiter import count_chars, limit
from service.api.schemas import TranslateRequest, TranslateResponse
from service.api.security import key_from_headers, require_key
from service.api.state import AppState, get_state
from service.api.translation import until_disconnected

router = APIRouter(tags=["translate"], dependencies=[Depends(require_key)])


@router.post("/translate", response_model=TranslateResponse,
             responses=responses(400, 401, 413, 422, 429, 503, 504))
async def translate(body: TranslateRequest, request: Request,
                    state: Annotated[AppState, Depends(get_state)]) -> TranslateResponse:
    """Translate one text or a list of texts with the model serving `source_lang` ->
    `target_lang` (or the explicit `model`). Concurrent requests are batched together.
    Each sentence is translated on its own; line breaks, blank lines and spacing come back as
    sent. A text without a sentence (blank, digits or punctuation alone) comes back as sent
    (finish_reason `empty`) without running the model."""
    limit(request, state.limiter, api_key=key_from_headers(request),
          chars=count_chars(body.text))
    return await until_disconnected(request, state.translation.translate(body))
