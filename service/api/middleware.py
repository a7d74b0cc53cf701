"""Pure ASGI middleware: request ids, access logs, metrics, draining, body size limit.

Pure ASGI (not ``BaseHTTPMiddleware``) so that ``receive`` keeps reporting client disconnects
to the routes and nothing is buffered twice.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import LIBRETRANSLATE_PREFIX, error_payload
from service.api.lifecycle import Lifecycle
from service.api.logs import request_id
from service.api.metrics import Metrics

access_log = logging.getLogger("service.access")
log = logging.getLogger(__name__)
SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
OPS_PATHS = ("/health/", "/metrics")  # not refused while draining, not counted in flight
BODY_METHODS = {"POST", "PUT", "PATCH"}


async def send_error(scope: Scope, send: Send, status: int, code: str, message: str,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A JSON error response straight from middleware, in the body shape of the route
    (LibreTranslate's under ``/libretranslate/``)."""
    libretranslate = str(scope.get("path", "")).startswith(LIBRETRANSLATE_PREFIX)
    body = error_payload(status, code, message, libretranslate=libretranslate)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def incoming_id(scope: Scope) -> str:
    """The client's ``X-Request-ID`` when it is short and plain, else a new one."""
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if SAFE_ID.match(text):
                return text
    return uuid.uuid4().hex


@dataclass
class _Outcome:
    status: int = 500
    started: bool = False


class RequestContextMiddleware:
    """Request id in and out, draining refusal, in-flight count, metrics, one access log line,
    and a JSON 500 (logged with its traceback, never sent) for anything unhandled."""

    def __init__(self, app: ASGIApp, lifecycle: Lifecycle, metrics: Metrics) -> None:
        self.app = app
        self.lifecycle = lifecycle
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = incoming_id(scope)
        token = request_id.set(rid)
        started, outcome = time.perf_counter(), _Outcome()
        header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                outcome.status, outcome.started = message["status"], True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        ops = scope["path"].startswith(OPS_PATHS)
        try:
            if not ops and self.lifecycle.draining:
                await send_error(scope, send_with_id, 503, "shutting_down", "the server is "
                                 "shutting down; retry on another instance",
                                 [(b"retry-after", b"5")])
                return
            await self._serve(scope, receive, send_with_id, ops, outcome)
        finally:
            self._finish(scope, outcome.status, time.perf_counter() - started)
            request_id.reset(token)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, ops: bool,
                     outcome: _Outcome) -> None:
        if not ops:
            self.lifecycle.in_flight += 1
            self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send)
        except Exception:
            log.exception("unhandled error")
            if not outcome.started:
                await send_error(scope, send, 500, "internal_error", "internal server error")
        finally:
            if not ops:
                self.lifecycle.in_flight -= 1
                self.metrics.in_flight.dec()

    def _finish(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        self.metrics.observe_request(route, status, seconds)
        access_log.info("request", extra={"request_id": request_id.get(), "fields": {
            "method": scope["method"], "path": scope["path"], "route": route,
            "status": status, "duration_ms": round(seconds * 1000, 2)}})


class BodyLimitMiddleware:
    """Reads bodies up to ``max_bytes`` (413 beyond, before any parsing), refuses JSON that is
    not UTF-8 (400), and replays them; after the body, ``receive`` is the server's again, so
    disconnects still arrive."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        limit_message = f"the request body is larger than {self.max_bytes} bytes"
        if self._declared(scope) > self.max_bytes:
            await send_error(scope, send, 413, "body_too_large", limit_message)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_error(scope, send, 413, "body_too_large", limit_message)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if _is_json(scope) and not _is_utf8(body):
            await send_error(scope, send, 400, "invalid_utf8",
                             "the request body is not valid UTF-8")
            return
        await self.app(scope, replay_body(body, receive), send)

    @staticmethod
    def _declared(scope: Scope) -> int:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            kind = value.split(b";")[0].strip().lower()
            return kind == b"application/json" or kind.endswith(b"+json")
    return False


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` as one message, then hands over to ``receive``."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
