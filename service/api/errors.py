"""One error body for every failure: ``{"error": {"code", "message", "field", "limit", ...}}``.

``ApiError`` is raised by routes and services; the handlers here turn it, FastAPI's validation
errors and Starlette's HTTP errors into that body. No response ever carries a stack trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.logs import request_id

LIBRETRANSLATE_PREFIX = "/libretranslate/"
STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type",
                422: "invalid_request", 429: "too_many_requests", 500: "internal_error",
                503: "unavailable", 504: "deadline_exceeded"}


class ErrorDetail(BaseModel):
    """What went wrong, machine-readable (``code``) and for people (``message``)."""

    code: str = Field(description="stable identifier, e.g. `text_too_long`, `queue_full`")
    message: str = Field(description="human-readable explanation")
    field: str | None = Field(default=None, description="request field at fault, e.g. `text[2]`")
    limit: int | float | None = Field(default=None, description="the limit that was exceeded")
    request_id: str | None = Field(default=None, description="the X-Request-ID of this request")
    details: dict[str, Any] | None = Field(default=None, description="extra context, e.g. `served`")


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class LibreErrorBody(BaseModel):
    """The error body under ``/libretranslate/``: LibreTranslate's ``{"error": "<message>"}``
    with our ``code``, ``field``, ``limit``, ``request_id`` and ``details`` beside it."""

    error: str = Field(description="human-readable explanation (what LibreTranslate sends)")
    code: str = Field(description="stable identifier, e.g. `text_too_long`, `queue_full`")
    field: str | None = Field(default=None, description="request field at fault")
    limit: int | float | None = Field(default=None, description="the limit that was exceeded")
    request_id: str | None = Field(default=None, description="the X-Request-ID of this request")
    details: dict[str, Any] | None = Field(default=None, description="extra context")


class ApiError(Exception):
    """An error response: status, code, message and optionally the field and limit."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 limit: float | None = None, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = ErrorDetail(code=code, message=message, field=field, limit=limit,
                                  details=details)
        self.headers = headers or {}


def error_response(status: int, detail: ErrorDetail, headers: dict[str, str] | None = None,
                   *, libretranslate: bool = False) -> JSONResponse:
    """The JSON error response, stamped with the current request id.

    Under ``/libretranslate/`` the body is LibreTranslate's ``{"error": "<message>"}`` (what
    its clients read), with ``code``, ``field``, ``limit`` and ``request_id`` beside it."""
    detail = detail.model_copy(update={"request_id": request_id.get()})
    body = ErrorBody(error=detail).model_dump(mode="json", exclude_none=True)
    if libretranslate:
        status = 400 if status == 422 else status  # LibreTranslate never answers 422
        body = {**body["error"], "error": detail.message}
        body.pop("message")
    return JSONResponse(body, status_code=status, headers=headers)


def is_libretranslate(request: Request) -> bool:
    """Whether the request is under the LibreTranslate-compatible prefix."""
    return request.url.path.startswith(LIBRETRANSLATE_PREFIX)


def error_payload(status: int, code: str, message: str, *, libretranslate: bool = False
                  ) -> bytes:
    """The same body as bytes, for middleware that answers before routing."""
    response = error_response(status, ErrorDetail(code=code, message=message),
                              libretranslate=libretranslate)
    return bytes(response.body)


def responses(*statuses: int, libretranslate: bool = False
              ) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries declaring the error body for these status codes
    (LibreTranslate's shape for the ``/libretranslate/`` routes)."""
    model = LibreErrorBody if libretranslate else ErrorBody
    return {status: {"model": model, "description": STATUS_CODES.get(status, "error")}
            for status in statuses}


def field_of(loc: Sequence[Any]) -> str:
    """``("body", "text", 2)`` -> ``text[2]``."""
    parts = [part for part in loc if part not in ("body", "query", "header", "path")]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


async def api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """``ApiError`` -> its status and body."""
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.detail, exc.headers,
                          libretranslate=is_libretranslate(request))


def _clean(message: object) -> str:
    return str(message).removeprefix("Value error, ")


async def validation_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI validation errors -> 422 (400 for malformed JSON) naming the first bad field."""
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx")
        reason = ctx.get("error", "") if isinstance(ctx, dict) else ""
        detail = ErrorDetail(code="malformed_json", message=f"request body is not valid JSON "
                             f"({reason})", field="body")
        return error_response(400, detail, libretranslate=is_libretranslate(request))
    summary = [{"field": field_of(err.get("loc", ())), "message": _clean(err.get("msg")),
                "type": str(err.get("type"))} for err in errors[:20]]
    detail = ErrorDetail(code="invalid_request", message=_clean(first.get("msg")),
                         field=field_of(first.get("loc", ())), details={"errors": summary})
    return error_response(422, detail, libretranslate=is_libretranslate(request))


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Starlette/FastAPI ``HTTPException`` (404, 405, unparseable body...) -> error body."""
    assert isinstance(exc, StarletteHTTPException)
    code = STATUS_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, ErrorDetail(code=code, message=message),
                          dict(exc.headers or {}), libretranslate=is_libretranslate(request))


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
