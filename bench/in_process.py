"""``python -m bench.in_process``: issue 8's protocol against the service's own batchers,
without HTTP.

The service's ``Batcher`` with each scheduling strategy (``RequestLevel``, ``IterationLevel``)
runs in this process over one translator, driven from one asyncio loop the way the HTTP route
drives them (``submit`` of one test-split sentence at beam ``--beam``); only the mode being
measured has work. Saturated throughput with ``--clients`` closed-loop clients, ``--rounds``
rounds taking turns; then open-loop Poisson arrivals at ``--loads`` of the request-level
capacity (its median), ``--load-rounds`` rounds per load taking turns: p50/p99 latency and
sentences/s; last, 10 sentences queued one work item each (as the streaming route does): time
to the first and to the last translation, against the same sentences as one request. The
summary gives the ratios of the medians (continuous / request), as ``bench.continuous`` does
over HTTP. Without the web server and the load generator on the same cores, this isolates what
the scheduling does; it also runs where the web stack is not installed (the lent GPU machine:
``--io-binding`` keeps both modes' decoder state on the device).
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
from typing import Any

from bench.data import sample_verses
from bench.protocol import MODES, finish, poisson, quantile, taking_turns
from inference import Translator
from inference.memory import OrtMemory
from service.api.batcher import (
    Batcher,
    DeadlineExceededError,
    DecodeOptions,
    QueueFullError,
)
from service.api.engine import TranslatorEngine
from service.api.iteration_level import IterationLevel
from service.api.request_level import RequestLevel

Batchers = dict[str, Batcher]


def batchers(translator: Translator, args: argparse.Namespace) -> Batchers:
    """Both modes over ``translator``, configured as the service configures them."""
    engine = TranslatorEngine(translator)
    loop = engine.decode_loop()
    assert loop is not None, "the bundle cannot join running batches; re-export it"
    request = RequestLevel(engine, max_batch_tokens=args.max_batch_tokens,
                           max_wait_s=args.max_wait_ms / 1000, wait_policy=args.wait_policy)
    continuous = IterationLevel(engine, loop,
                                max_batch_tokens=args.continuous_budget or args.max_batch_tokens,
                                overlap_encoder=not args.no_overlap)
    return {"request": Batcher(request, queue_size=args.queue_size, name="request"),
            "continuous": Batcher(continuous, queue_size=args.queue_size, name="continuous")}


async def closed_loop(batcher: Batcher, sentences: list[str],
                      clients: int, seconds: float, options: DecodeOptions) -> dict[str, Any]:
    """``clients`` clients each sending one sentence after the other for ``seconds``."""
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            if await _answered(batcher, rng.choice(sentences), options, errors):
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client(seed) for seed in range(clients)))
    wall = time.perf_counter() - started
    return {"clients": clients, "sentences_per_s": round(len(latencies) / wall, 2),
            "p50_ms": round(quantile(latencies, 50), 1),
            "p99_ms": round(quantile(latencies, 99), 1), "errors": len(errors)}


async def _answered(batcher: Batcher, text: str, options: DecodeOptions,
                    errors: list[str]) -> bool:
    """Whether ``text`` was translated (a full queue or a missed deadline is an error, as
    the HTTP route's 429 / 504 would be)."""
    try:
        await batcher.submit([text], options, timeout=300)
    except (QueueFullError, DeadlineExceededError) as err:
        errors.append(type(err).__name__)
        return False
    return True


async def open_loop(batcher: Batcher, sentences: list[str], rate: float,
                    seconds: float, options: DecodeOptions, seed: int) -> dict[str, Any]:
    """Poisson arrivals at ``rate`` per second for ``seconds``; latency counts from the
    scheduled arrival, so a batcher falling behind shows up as latency."""
    latencies: list[float] = []
    errors: list[str] = []

    async def one(at: float, text: str) -> None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        if await _answered(batcher, text, options, errors):
            latencies.append(time.perf_counter() - at)

    start = time.perf_counter() + 0.2
    arrivals = poisson(sentences, rate, seconds, seed)
    await asyncio.gather(*(one(start + at, text) for at, text in arrivals))
    wall = time.perf_counter() - start
    return {"offered_per_s": round(rate, 2), "sent": len(arrivals),
            "sentences_per_s": round(len(latencies) / wall, 2),
            "p50_ms": round(quantile(latencies, 50), 1),
            "p99_ms": round(quantile(latencies, 99), 1), "errors": len(errors)}


async def stream_timing(batcher: Batcher, sentences: list[str],
                        options: DecodeOptions) -> dict[str, float]:
    """Milliseconds until the first of ``sentences`` is translated when each is queued as
    its own work item (as ``POST /translate/stream`` queues a text's sentences, sending
    sentence ``i`` once sentences ``0..i`` are done), until all are, and for the same
    sentences as one request (``POST /translate`` with a list)."""
    started = time.perf_counter()
    futures = batcher.submit_each(sentences, options, timeout=300)
    await futures[0]
    first = time.perf_counter() - started
    await asyncio.gather(*futures)
    done = time.perf_counter() - started
    started = time.perf_counter()
    await batcher.submit(sentences, options, timeout=300)
    whole = time.perf_counter() - started
    return {"stream_first_sentence_ms": round(1000 * first, 1),
            "stream_done_ms": round(1000 * done, 1), "translate_list_ms": round(1000 * whole, 1)}


async def measure(translator: Translator, args: argparse.Namespace, sentences: list[str]
                  ) -> list[dict[str, Any]]:
    """Every measurement, the modes taking turns (as ``bench.continuous.measure``)."""
    modes = batchers(translator, args)
    for batcher in modes.values():
        batcher.start()
    options = DecodeOptions(beam_size=args.beam)
    rows: list[dict[str, Any]] = []
    try:
        for mode in MODES:  # warm both
            await closed_loop(modes[mode], sentences, args.clients, args.warmup, options)
        for index in range(args.rounds):
            for mode in taking_turns(index):
                result = await closed_loop(modes[mode], sentences, args.clients, args.seconds,
                                           options)
                rows.append(_report({"mode": mode, "kind": "saturated", "round": index,
                                     **result}))
        capacity = statistics.median(r["sentences_per_s"] for r in rows
                                     if r["mode"] == "request")
        for index, fraction in enumerate(args.loads):
            for turn in range(args.load_rounds):
                for mode in taking_turns(index + turn):
                    result = await open_loop(modes[mode], sentences, fraction * capacity,
                                             args.seconds, options,
                                             seed=int(100 * fraction) + 1000 * turn)
                    rows.append(_report({"mode": mode, "kind": "open_loop", "load": fraction,
                                         "round": turn, **result}))
        for mode in MODES:
            rows.append(_report({"mode": mode, "kind": "stream", **await stream_timing(
                modes[mode], sentences[:10], options)}))
    finally:
        for batcher in modes.values():
            await batcher.close(30)
    return rows


def _report(row: dict[str, Any]) -> dict[str, Any]:
    print(json.dumps(row), flush=True)
    return row


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m bench.in_process", description=__doc__)
    cli.add_argument("--bundle", type=Path, default=Path("models/transformer-en-fr"))
    cli.add_argument("--data", type=Path, default=Path("data/en-fr/test.jsonl"))
    cli.add_argument("--beam", type=int, default=4)
    cli.add_argument("--threads", type=int, default=2)
    cli.add_argument("--io-binding", action="store_true",
                     help="decoder state in ONNX Runtime values (on a GPU, on the device)")
    cli.add_argument("--seconds", type=float, default=20, help="per measurement")
    cli.add_argument("--warmup", type=float, default=3, help="seconds of load before measuring")
    cli.add_argument("--rounds", type=int, default=3, help="saturated measurements per mode")
    cli.add_argument("--load-rounds", type=int, default=3, help="open-loop runs per mode and load")
    cli.add_argument("--clients", type=int, default=64, help="closed-loop clients (saturated)")
    cli.add_argument("--loads", type=lambda s: [float(x) for x in s.split(",")],
                     default=[0.5, 0.7, 0.9])
    # the service's defaults (service/api/settings.py; a test keeps them equal)
    cli.add_argument("--max-batch-tokens", type=int, default=4096,
                     help="TRANSLATE_MAX_BATCH_TOKENS: each request-level call's budget and its "
                     "translator's sub-batches, and the continuous loop's running budget")
    cli.add_argument("--continuous-budget", type=int,
                     help="the continuous loop's running budget only (default: as above)")
    cli.add_argument("--max-wait-ms", type=float, default=5.0)
    cli.add_argument("--wait-policy", choices=["adaptive", "always"], default="adaptive")
    cli.add_argument("--queue-size", type=int, default=256)
    cli.add_argument("--no-overlap", action="store_true",
                     help="continuous: encode arrivals before their first step (not during one)")
    cli.add_argument("--out", type=Path)
    cli.add_argument("--png", type=Path)
    return cli


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    sentences = sample_verses(args.data, 2000)
    if sentences is None:
        return 2
    translator = Translator.load(args.bundle, threads=args.threads,
                                 max_batch_tokens=args.max_batch_tokens,
                                 io_binding=args.io_binding or None)  # as the service loads it
    print(json.dumps({"bundle": str(args.bundle), "provider": translator.provider,
                      "io_binding": isinstance(translator.model.memory, OrtMemory)}), flush=True)
    rows = asyncio.run(measure(translator, args, sentences))
    finish(rows, args.out, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
