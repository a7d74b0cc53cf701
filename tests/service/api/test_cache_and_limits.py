"""The translation cache (no decoding on a hit, bounded, metrics, off switch) and the rate
limits (429 only past the limit, Retry-After, per key or address, trusted proxies), alone and
under concurrent requests."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2 as httpx
import pytest

from inference.translator import Translation
from service.api.app import create_app
from service.api.batcher import DecodeOptions
from service.api.cache import TranslationCache, entry_bytes
from service.api.settings import Settings
from tests.service.api.fakes import FakeLoader, MakeClient, asgi_client, write_manifest

EN_FR = {"source_lang": "en", "target_lang": "fr"}
LIBRE = "/libretranslate/translate"


def test_a_repeated_sentence_does_not_reach_the_engine(make_client: MakeClient,
                                                       models_dir: Path) -> None:
    loader = FakeLoader()
    client = make_client(loader)
    engine = loader.engines[models_dir / "en-fr"]
    first = client.post("/translate", json={"text": ["Good day.", "Bye."], **EN_FR}).json()
    calls = len(engine.calls)
    again = client.post("/translate", json={"text": ["Good day.", " Bye. "], **EN_FR}).json()
    assert len(engine.calls) == calls  # both texts from the cache
    assert again["translations"][0] == first["translations"][0]
    cached, fresh = again["translations"][1], first["translations"][1]
    assert cached["text"] == f" {fresh['text']} "  # the sentence from the cache, spacing as sent
    assert cached["score"] == fresh["score"]
    libre = client.post(LIBRE, json={"q": "Good day.", "source": "en", "target": "fr",
                                     "alternatives": 0})
    assert libre.json() == {"translatedText": "fr:Good day."}
    other = client.post("/translate", json={"text": "Good day.", "beam_size": 2, **EN_FR})
    assert other.status_code == 200 and len(engine.calls) > calls  # other options: a miss
    metrics = client.get("/metrics").text
    assert 'translate_cache_hits_total{model="en-fr"} 3.0' in metrics
    assert 'translate_cache_misses_total{model="en-fr"} 3.0' in metrics
    assert "translate_cache_entries 3.0" in metrics


def test_cache_off_switch(make_client: MakeClient, models_dir: Path) -> None:
    loader = FakeLoader()
    client = make_client(loader, cache_max_entries=0)
    engine = loader.engines[models_dir / "en-fr"]
    for _ in range(2):
        client.post("/translate", json={"text": "Good day.", **EN_FR})
    assert [texts for texts, _ in engine.calls[-2:]] == [["Good day."], ["Good day."]]
    assert "translate_cache_hits_total{" not in client.get("/metrics").text


EN_FR_PAIR = ("en", "fr")


def result(text: str) -> Translation:
    return Translation(text, -0.5, "eos")


def test_cache_stays_within_entries_and_bytes() -> None:
    options = DecodeOptions()
    by_entries = TranslationCache(max_entries=3, max_bytes=10**9)
    for index in range(10):
        by_entries.put("m", options, f"t{index}", result(f"r{index}"), pair=EN_FR_PAIR)
    assert by_entries.entries == 3
    assert [by_entries.get("m", options, f"t{i}", pair=EN_FR_PAIR) is not None
            for i in (6, 7, 8, 9)] == [False, True, True, True]
    size = entry_bytes("t0", result("r0"))
    by_bytes = TranslationCache(max_entries=1000, max_bytes=4 * size)
    for index in range(10):
        by_bytes.put("m", options, f"t{index}", result(f"r{index}"), pair=EN_FR_PAIR)
    assert by_bytes.entries == 4 and by_bytes.bytes == 4 * size
    by_bytes.get("m", options, "t6", pair=EN_FR_PAIR)  # used: survives the next eviction
    by_bytes.put("m", options, "new", result("new"), pair=EN_FR_PAIR)
    assert by_bytes.get("m", options, "t6", pair=EN_FR_PAIR) is not None
    assert by_bytes.get("m", options, "t7", pair=EN_FR_PAIR) is None
    by_bytes.put("m", options, "huge", result("x" * 10 * size), pair=EN_FR_PAIR)
    assert by_bytes.get("m", options, "huge", pair=EN_FR_PAIR) is None
    assert by_bytes.bytes <= 4 * size


def test_cache_keeps_the_pairs_of_one_model_apart() -> None:
    cache = TranslationCache(max_entries=10, max_bytes=10**6)
    cache.put("m", DecodeOptions(), "hello", result("bonjour"), pair=EN_FR_PAIR)
    assert cache.get("m", DecodeOptions(), "hello", pair=("en", "de")) is None
    found = cache.get("m", DecodeOptions(), "hello", pair=EN_FR_PAIR)
    assert found is not None and found.text == "bonjour"


def test_requests_per_minute_per_key_then_address(make_client: MakeClient) -> None:
    client = make_client(rate_limit_requests_per_minute=2)
    body = {"text": "a", **EN_FR}
    assert [client.post("/translate", json=body).status_code for _ in range(2)] == [200, 200]
    refused = client.post("/translate", json=body)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["limit"] == 2
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    libre = client.post(LIBRE, json={"q": "a", "source": "en", "target": "fr"})
    assert libre.status_code == 429
    assert libre.json()["error"] == "Slowdown: 2 requests per 1 minute"
    keyed = make_client(rate_limit_requests_per_minute=1, api_keys="k1,k2")
    for key in ("k1", "k2"):  # each key has its own count
        assert keyed.post("/translate", json=body, headers={"X-API-Key": key}
                          ).status_code == 200
    assert keyed.post("/translate", json=body, headers={"X-API-Key": "k1"}
                      ).status_code == 429
    assert client.get("/libretranslate/languages").status_code == 200  # not limited
    unchecked = make_client(rate_limit_requests_per_minute=1)  # no keys: any key is made up
    assert unchecked.post("/translate", json=body, headers={"X-API-Key": "a"}
                          ).status_code == 200
    assert unchecked.post("/translate", json=body, headers={"X-API-Key": "b"}
                          ).status_code == 429


def test_characters_per_minute(make_client: MakeClient) -> None:
    client = make_client(rate_limit_chars_per_minute=10)
    assert client.post("/translate", json={"text": "abcdef", **EN_FR}).status_code == 200
    over = client.post("/translate", json={"text": "abcdef", **EN_FR})
    assert over.status_code == 429 and over.json()["error"]["field"] == "characters"
    assert client.post("/translate", json={"text": "abcd", **EN_FR}).status_code == 200
    never = client.post("/translate", json={"text": "x" * 11, **EN_FR})
    assert never.status_code == 400 and never.json()["error"]["limit"] == 10


def test_forwarded_for_counts_only_from_trusted_proxies(make_client: MakeClient) -> None:
    body = {"text": "a", **EN_FR}
    untrusted = make_client(rate_limit_requests_per_minute=1)
    assert untrusted.post("/translate", json=body,
                          headers={"X-Forwarded-For": "1.1.1.1"}).status_code == 200
    assert untrusted.post("/translate", json=body,  # same peer: the header is ignored
                          headers={"X-Forwarded-For": "2.2.2.2"}).status_code == 429
    with pytest.raises(ValueError, match=r"trusted_proxies: 'proxy\.local' is not an address"):
        Settings(trusted_proxies="10.0.0.1,proxy.local")  # type: ignore[arg-type]  # parsed


@pytest.mark.parametrize("proxy", ["127.0.0.1", "127.0.0.0/8"])
def test_forwarded_for_from_a_trusted_proxy(tmp_path: Path, proxy: str) -> None:
    write_manifest(tmp_path / "en-fr")
    app = create_app(Settings(models_dir=tmp_path, rate_limit_requests_per_minute=1,
                              trusted_proxies=[proxy]), loader=FakeLoader())

    async def run() -> list[int]:
        statuses = []
        async with asgi_client(app) as client:
            for forwarded in ("1.1.1.1", "2.2.2.2", "1.1.1.1"):
                reply = await client.post("/translate", json={"text": "a", **EN_FR},
                                          headers={"X-Forwarded-For": forwarded})
                statuses.append(reply.status_code)
        return statuses

    assert asyncio.run(run()) == [200, 200, 429]


def test_concurrent_requests_429_only_past_the_limit_and_hits_identical(
        tmp_path: Path) -> None:
    write_manifest(tmp_path / "en-fr")
    loader = FakeLoader()
    app = create_app(Settings(models_dir=tmp_path, rate_limit_requests_per_minute=30,
                              cache_max_entries=5), loader=loader)

    async def run() -> list[httpx.Response]:
        async with asgi_client(app, "10.0.0.1") as client:
            texts = [f"sentence {i % 8}" for i in range(50)]
            return list(await asyncio.gather(*(
                client.post("/translate", json={"text": text, **EN_FR}) for text in texts)))

    replies = asyncio.run(run())
    statuses = [reply.status_code for reply in replies]
    assert statuses.count(200) == 30 and statuses.count(429) == 20
    for reply in replies:
        if reply.status_code == 200:
            sent = reply.json()["translations"][0]
            assert sent["text"].startswith("fr:sentence ")
    by_text: dict[str, set[str]] = {}
    for reply in replies:
        if reply.status_code == 200:
            out = reply.json()["translations"][0]
            by_text.setdefault(out["text"], set()).add(repr(out))
    assert all(len(variants) == 1 for variants in by_text.values())
    cache = app.state.service.translation.cache
    assert cache is not None and cache.entries <= 5
