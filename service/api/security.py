"""Optional API keys: sha256 hashes compared in constant time; keys are never logged.

A key is read from ``Authorization: Bearer <key>``, ``X-API-Key: <key>`` or, for the
LibreTranslate routes, the ``api_key`` field. With no key configured every request passes.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from service.api.errors import ApiError

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="translate"'}


class KeyChecker:
    """Accepts a request when its key's sha256 equals one of the stored hashes."""

    def __init__(self, hashes: frozenset[str]) -> None:
        self._hashes = [bytes.fromhex(digest) for digest in sorted(hashes)]

    @property
    def enabled(self) -> bool:
        """At least one key is configured."""
        return bool(self._hashes)

    def accepts(self, key: str) -> bool:
        """Constant time in the key and in which stored hash matches (all are compared)."""
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        matched = False
        for stored in self._hashes:
            matched |= hmac.compare_digest(digest, stored)
        return matched

    def check(self, key: str | None) -> None:
        """Raise a 401 ``ApiError`` unless the key is accepted (or keys are off)."""
        if not self.enabled:
            return
        if not key:
            raise ApiError(401, "missing_api_key", "an API key is required (Authorization: "
                           "Bearer <key>, X-API-Key, or api_key)", headers=CHALLENGE)
        if not self.accepts(key):
            raise ApiError(401, "invalid_api_key", "the API key is not valid",
                           headers=CHALLENGE)


def key_from_headers(request: Request) -> str | None:
    """The key from ``Authorization: Bearer`` or ``X-API-Key``, if any."""
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


async def require_key(request: Request) -> None:
    """Dependency: the API routes need a key when keys are configured."""
    request.app.state.service.keys.check(key_from_headers(request))


async def require_key_for_ops(request: Request) -> None:
    """Dependency: health and metrics need a key only with ``auth_health``."""
    state = request.app.state.service
    if state.settings.auth_health:
        state.keys.check(key_from_headers(request))
