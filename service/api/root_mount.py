"""``libretranslate_at_root``: LibreTranslate's routes answered at the root as well.

``/detect``, ``/languages``, ``/frontend/settings``, ``/translate_file``, ``/download_file/...``,
``/suggest``, ``/spec`` and ``/health`` do not collide with the native API and are passed to
the ``/libretranslate/`` routes. ``POST /translate`` exists in both: it goes to LibreTranslate's
when the request is LibreTranslate's (a form or multipart body, ``q`` in the query string, or a
JSON object with ``q`` and without the native ``text``) and stays native otherwise.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.middleware import replay_body
from service.api.routes.libretranslate import PREFIX

SHARED = ("/detect", "/languages", "/frontend/settings", "/translate_file", "/suggest",
          "/spec", "/health")
FORMS = (b"application/x-www-form-urlencoded", b"multipart/form-data")


def content_type(scope: Scope) -> bytes:
    """The request's media type, lower case, without parameters."""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return value.split(b";")[0].strip().lower()
    return b""


def is_libretranslate_body(body: bytes) -> bool:
    """A JSON object with LibreTranslate's ``q`` and without the native ``text``."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and "q" in data and "text" not in data


class RootMountMiddleware:
    """Rewrites root paths of LibreTranslate requests to ``/libretranslate/...`` and marks the
    scope (``libretranslate_root``) so download URLs stay at the root."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path in SHARED or path.startswith("/download_file/"):
            await self.app(self._moved(scope), receive, send)
            return
        if path != "/translate" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        body, receive = await buffered(receive)
        query = scope.get("query_string", b"")
        libre = (content_type(scope) in FORMS or b"&q=" in b"&" + query
                 or is_libretranslate_body(body))
        await self.app(self._moved(scope) if libre else scope, receive, send)

    @staticmethod
    def _moved(scope: Scope) -> Scope:
        path = PREFIX + scope["path"]
        return {**scope, "path": path, "raw_path": path.encode(), "libretranslate_root": True}


async def buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body (already bounded by ``BodyLimitMiddleware``) and a ``receive`` that
    replays it, then hands over to the server's."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, replay_body(body, receive)
