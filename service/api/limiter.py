"""Rate limits per client: requests and characters per minute, through ``limits``.

A client is its API key (hashed) when keys are configured (the key was checked before), else
its address: the connection's peer, or the first ``X-Forwarded-For`` address when the peer is
a trusted proxy. Counters live in
``limits``' memory storage as fixed windows (flask-limiter's default strategy): one counter per
client and limit, starting at the client's first request and dropped when its minute ends, so
memory follows the clients of the last minute.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections.abc import Iterable

from fastapi import Request
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from service.api.errors import ApiError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> list[Network]:
    """``10.0.0.1``, ``10.0.0.0/8``, ``::1`` -> networks (a bad entry is a ``ValueError``)."""
    return [ipaddress.ip_network(value.strip(), strict=False) for value in values]


class RateLimiter:
    """Refuses a client's request past ``requests_per_minute`` or ``chars_per_minute``
    (0 turns a limit off) with a 429 carrying ``Retry-After``."""

    def __init__(self, *, requests_per_minute: int, chars_per_minute: int,
                 trusted_proxies: Iterable[str] = (), by_key: bool = True) -> None:
        self._strategy = FixedWindowRateLimiter(MemoryStorage())
        self._limits: list[tuple[str, RateLimitItem]] = [
            (what, RateLimitItemPerMinute(amount)) for what, amount in
            (("requests", requests_per_minute), ("characters", chars_per_minute)) if amount]
        self._proxies = parse_networks(trusted_proxies)
        self._by_key = by_key

    @property
    def enabled(self) -> bool:
        """At least one limit is set."""
        return bool(self._limits)

    def client(self, request: Request, api_key: str | None) -> str:
        """The identity the limits count for (a key only when keys are checked, else any
        made-up key would be a fresh identity)."""
        if api_key and self._by_key:
            return "key:" + hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()
        return "addr:" + self.address(request)

    def address(self, request: Request) -> str:
        """The client's address; ``X-Forwarded-For``'s first entry counts only from a
        trusted proxy."""
        peer = request.client.host if request.client else "unknown"
        forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
        if forwarded and self._trusted(peer):
            return forwarded
        return peer

    def _trusted(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self._proxies)

    def check(self, client: str, *, chars: int) -> None:
        """Count one request of ``chars`` characters for ``client``, or raise the 429 (nothing
        is counted for a refused request); a request larger than the character limit is a
        400, as it could never pass."""
        costs = {"requests": 1, "characters": chars}
        for what, item in self._limits:
            if what == "characters" and chars > item.amount:
                raise ApiError(400, "request_too_long", f"{chars} characters in one request; "
                               f"the limit is {item.amount} per minute", field="q",
                               limit=item.amount)
        for what, item in self._limits:
            if not self._strategy.test(item, client, cost=costs[what]):
                raise self._refusal(what, item, client)
        for what, item in self._limits:
            self._strategy.hit(item, client, cost=costs[what])

    def _refusal(self, what: str, item: RateLimitItem, client: str) -> ApiError:
        reset = self._strategy.get_window_stats(item, client).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        return ApiError(429, "rate_limited", f"Slowdown: {item.amount} {what} per 1 minute",
                        field=what, limit=item.amount, headers={"Retry-After": str(wait)})


def count_chars(value: object) -> int:
    """Characters of a text or a list of texts (0 for anything else)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(len(item) for item in value if isinstance(item, str))
    return 0


def limit(request: Request, limiter: RateLimiter, *, api_key: str | None, chars: int) -> None:
    """Apply the rate limits to a request (nothing when they are off)."""
    if limiter.enabled:
        limiter.check(limiter.client(request, api_key), chars=chars)
