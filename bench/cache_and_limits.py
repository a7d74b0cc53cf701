"""``python -m bench.cache_and_limits``: the translation cache's effect on a request mix with
repeats, and the rate limiter's cost per request.

Cache: the app of ``service.api`` with a real bundle, in process (httpx's ASGI transport, no
sockets), gets ``--requests`` sequential ``POST /translate`` of one test verse each, greedy;
``--repeat`` of them (30 % by default) repeat a verse sent earlier, the same fixed random mix
for both arms. Arms: cache off (``cache_max_entries=0``) and on, alternating ``--rounds``
times, each round a new app. Prints the median total seconds and ms per request of each arm,
and the cache's hits. Limiter: ``RateLimiter.client`` + ``check`` with both limits on (never
reached), median microseconds per request over ``--calls`` calls, for an API key and for an
address.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2 as httpx

from bench.data import sample_verses
from service.api.app import create_app
from service.api.limiter import RateLimiter
from service.api.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def request_mix(verses: list[str], count: int, repeat: float, seed: int = 0) -> list[str]:
    """``count`` texts: each a new verse, or with probability ``repeat`` one sent before."""
    rng = random.Random(seed)
    fresh, sent = iter(verses), list[str]()
    for _ in range(count):
        sent.append(rng.choice(sent) if sent and rng.random() < repeat else next(fresh))
    return sent


async def run_arm(bundle: Path, texts: list[str], cache_entries: int) -> dict[str, Any]:
    """Send ``texts`` one at a time to a new app; total seconds and cache hits."""
    settings = Settings(models_dir=bundle, cache_max_entries=cache_entries, threads=1,
                        default_beam_size=1)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://bench", timeout=60) as client:
        while (await client.get("/health/ready")).status_code != 200:
            await asyncio.sleep(0.05)
        started = time.perf_counter()
        for text in texts:
            reply = await client.post("/translate", json={
                "text": text, "source_lang": "en", "target_lang": "fr", "beam_size": 1})
            reply.raise_for_status()
        seconds = time.perf_counter() - started
    cache = app.state.service.translation.cache
    hits = 0 if cache is None else len(texts) - cache.entries
    return {"seconds": seconds, "hits": hits}


def limiter_micros(calls: int, *, keyed: bool) -> float:
    """Median microseconds of identifying a client and checking both limits."""
    limiter = RateLimiter(requests_per_minute=10**9, chars_per_minute=10**12,
                          trusted_proxies=["10.0.0.0/8"])
    request: Any = SimpleNamespace(client=SimpleNamespace(host="10.0.0.7"),
                                   headers={"x-forwarded-for": "203.0.113.9"})
    timings = []
    for index in range(calls):
        key = f"key-{index % 50}" if keyed else None
        started = time.perf_counter()
        limiter.check(limiter.client(request, key), chars=120)
        timings.append((time.perf_counter() - started) * 1e6)
    return statistics.median(timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "models/transformer-en-fr")
    parser.add_argument("--test", type=Path, default=ROOT / "data/en-fr/test.jsonl")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--repeat", type=float, default=0.3, help="share of repeated texts")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calls", type=int, default=20000, help="limiter calls")
    args = parser.parse_args(argv)
    if not (args.bundle / "model.json").is_file() or not 0 <= args.repeat < 1:
        print(f"error: --bundle must hold model.json ({args.bundle}) and 0 <= --repeat < 1",
              file=sys.stderr)
        return 2
    verses = sample_verses(args.test, args.requests)
    if verses is None:
        return 2
    texts = request_mix(verses, args.requests, args.repeat)
    arms: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for arm, entries in (("off", 0), ("on", 10_000)):
            arms[arm].append(asyncio.run(run_arm(args.bundle, texts, entries)))
    summary: dict[str, Any] = {"requests": len(texts), "distinct": len(set(texts))}
    for arm, runs in arms.items():
        seconds = statistics.median(run["seconds"] for run in runs)
        summary[f"cache_{arm}"] = {"seconds": round(seconds, 2), "hits": runs[0]["hits"],
                                   "ms_per_request": round(1000 * seconds / len(texts), 1)}
    summary["speedup"] = round(summary["cache_off"]["seconds"] / summary["cache_on"]["seconds"],
                               2)
    summary["limiter_us_per_request"] = {
        "api_key": round(limiter_micros(args.calls, keyed=True), 1),
        "address_via_trusted_proxy": round(limiter_micros(args.calls, keyed=False), 1)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
