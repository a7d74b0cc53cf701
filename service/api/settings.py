"""One ``Settings`` object for the HTTP service, read from ``TRANSLATE_*`` environment variables.

Built by the caller (``python -m service``, a test) and handed to ``create_app``; never a
module-level singleton. Every field is documented in ``docs/service.md``.
List fields accept a JSON list (``'["a", "b"]'``) or a comma-separated string (``a,b``).
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# Shortest deadline: one engine call (an encoder pass alone) takes longer, so a shorter one
# could only expire (a 504 for a request that was never possible).
MIN_TIMEOUT_S = 0.01
PREFIX = "TRANSLATE_"


def split_list(value: Any) -> Any:
    """``'a, b'`` or ``'["a", "b"]'`` -> ``["a", "b"]``; lists pass through."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return [item.strip() for item in text.split(",") if item.strip()]


def check_environment(environ: Mapping[str, str], fields: Iterable[str]) -> None:
    """Refuse a ``TRANSLATE_*`` variable that names no setting, suggesting the closest one."""
    known = [PREFIX + name.upper() for name in fields]
    for variable in sorted(environ):
        name = variable.upper()
        if name.startswith(PREFIX) and name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ValueError(f"{variable} is not a setting{hint} (every setting: "
                             "docs/service.md)")


def hash_key(key: str) -> str:
    """Hex sha256 of an API key: what the server stores and compares."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class Settings(BaseSettings):
    """Everything the service reads from its environment (prefix ``TRANSLATE_``)."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)

    # Where and what to serve
    host: str = Field(default="127.0.0.1", description="address `python -m service` binds")
    port: int = Field(default=8000, ge=0, le=65535, description="port `python -m service` binds")
    models_dir: Path = Field(default=Path("models"), description="searched for bundles")
    default_models: CommaList = Field(default_factory=list,
                                      description="bundles preferred for their language pair")
    required_models: CommaList = Field(default_factory=list,
                                       description="bundles readiness requires (lenient)")
    load_policy: Literal["strict", "lenient"] = Field(
        default="strict", description="strict: a broken bundle stops the server; lenient: it "
        "is marked unavailable")
    # Engine
    threads: int | None = Field(default=None, ge=1, description="ONNX Runtime intra-op threads")
    providers: CommaList = Field(default_factory=list,
                                 description="ONNX Runtime execution providers, in order")
    require_gpu: bool = Field(default=False, description="fail when CUDA is not usable")
    default_beam_size: int = Field(default=4, ge=1, description="beam when a request has none")
    # Batching and deadlines
    max_batch_tokens: int = Field(default=4096, ge=1, description="token budget per engine call")
    batching: Literal["request", "continuous"] = Field(
        default="continuous", description="request: batches of whole requests; continuous: "
        "requests join and leave the running decode loop between steps (request-level for "
        "bundles that cannot join)")
    max_wait_ms: float = Field(default=5.0, ge=0,
                               description="longest wait to fill a batch (request-level)")
    queue_size: int = Field(default=256, ge=1, description="queued requests per model")
    request_timeout_s: float = Field(default=30.0, ge=MIN_TIMEOUT_S,
                                     description="default, maximum deadline")
    drain_timeout_s: float = Field(default=30.0, ge=0, description="shutdown wait for requests")
    # Limits
    max_chars_per_text: int = Field(default=5000, ge=1, description="characters in one text")
    max_texts: int = Field(default=64, ge=1, description="texts in one request")
    max_total_chars: int = Field(default=20000, ge=1, description="characters in one request")
    max_beam_size: int = Field(default=8, ge=1, description="largest beam_size")
    max_hypotheses: int = Field(default=8, ge=1, description="largest num_hypotheses")
    max_length_limit: int = Field(default=512, ge=1, description="largest max_length")
    max_body_bytes: int = Field(default=1_000_000, ge=1, description="body size (413 above)")
    # Security
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="plain API keys, hashed at load")
    api_key_hashes: CommaList = Field(default_factory=list,
                                      description="sha256 hex digests of API keys")
    auth_health: bool = Field(default=False, description="health and metrics need a key")
    cors_origins: CommaList = Field(default_factory=list,
                                    description="origins allowed by CORS (`*` for any)")
    log_level: str = Field(default="info", description="level of the JSON logs")
    # LibreTranslate API, rate limits, cache
    libretranslate_at_root: bool = Field(
        default=False, description="also serve the LibreTranslate routes at the root; "
        "`POST /translate` goes to LibreTranslate's when its fields are LibreTranslate's "
        "(`q`, a form, or the query string) and stays the native route for a JSON `text`")
    max_file_bytes: int = Field(default=500_000, ge=1,
                                description="size of a file sent to `/translate_file`")
    translated_file_ttl_s: float = Field(default=600.0, gt=0,
                                         description="how long a translated file is kept")
    translated_files_max_bytes: int = Field(
        default=50_000_000, ge=1, description="all kept translated files together (the "
        "oldest are dropped first)")
    rate_limit_requests_per_minute: int = Field(
        default=0, ge=0, description="translation requests per client per minute (0: off)")
    rate_limit_chars_per_minute: int = Field(
        default=0, ge=0, description="characters translated per client per minute (0: off)")
    trusted_proxies: CommaList = Field(
        default_factory=list, description="addresses or networks of reverse proxies whose "
        "X-Forwarded-For names the client (for rate limits)")
    cache_max_entries: int = Field(default=10_000, ge=0,
                                   description="translations kept in the cache (0: no cache)")
    cache_max_bytes: int = Field(default=64_000_000, ge=1,
                                 description="bytes of text the cache holds at most")
    ui: bool = Field(default=True, description="serve the translation page at `GET /` "
                     "(false: `/` and `/static/` are 404)")

    @model_validator(mode="before")
    @classmethod
    def _known_variables(cls, values: Any) -> Any:
        check_environment(os.environ, cls.model_fields)
        return values

    @field_validator("default_models", "required_models", "providers", "api_key_hashes",
                     "cors_origins", "api_keys", "trusted_proxies", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return split_list(value)

    @field_validator("api_key_hashes")
    @classmethod
    def _check_hashes(cls, value: list[str]) -> list[str]:
        lowered = [digest.lower() for digest in value]
        for digest in lowered:
            if not SHA256_HEX.match(digest):
                raise ValueError("every api_key_hashes entry must be 64 hex digits (sha256)")
        return lowered

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {entry!r} is not an address or a network "
                                 "(e.g. 10.0.0.1 or 10.0.0.0/8)") from None
        return value

    def key_hashes(self) -> frozenset[str]:
        """All accepted keys as sha256 hex digests; empty means no authentication."""
        plain = {hash_key(key.get_secret_value()) for key in self.api_keys}
        return frozenset(plain | set(self.api_key_hashes))
