"""``python -m bench.continuous``: request-level vs continuous batching over HTTP (issue 8).

Both servers run side by side in one run (``python -m service`` with ``TRANSLATE_BATCHING``
set; only one is under load at a time, the other idles). The saturated throughput (closed loop,
``--saturate-clients`` clients) is measured in ``--rounds`` rounds taking turns, the order
flipped every round, so that machine drift hits both modes alike; the ratio is of the medians.
Then open-loop Poisson arrivals of single test-split sentences (mixed lengths) at 50 %, 70 %
and 90 % of the **request-level** capacity (its median), ``--load-rounds`` times per mode and
load, the two modes taking turns: p50/p99 latency, achieved sentences/s, errors; the summary
gives the ratio of the medians at 70 % and each round's ratio. Last, a 10-sentence text on
``/translate/stream``: time to the first sentence event and to the final event, against
``/translate`` for the same text. Writes JSONL rows and a chart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx2 as httpx

from bench.data import sample_verses
from bench.load import load, serving
from bench.protocol import MODES, finish, poisson, quantile, taking_turns


async def open_loop(port: int, sentences: list[str], rate: float, seconds: float,
                    body: dict[str, Any], seed: int) -> dict[str, Any]:
    """Poisson arrivals at ``rate`` per second for ``seconds``; latency counts from the
    scheduled arrival, so a server falling behind shows up as latency, not a lower rate."""
    latencies: list[float] = []
    errors: list[int] = []
    limits = httpx.Limits(max_connections=1024)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits,
                                 timeout=300) as http:
        async def one(at: float, text: str) -> None:
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            response = await http.post("/translate", json={**body, "text": text})
            if response.status_code == 200:
                latencies.append(time.perf_counter() - at)
            else:
                errors.append(response.status_code)

        start = time.perf_counter() + 0.2
        tasks = [asyncio.create_task(one(start + at, text))
                 for at, text in poisson(sentences, rate, seconds, seed)]
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
    return {"offered_per_s": round(rate, 2), "sent": len(tasks),
            "sentences_per_s": round(len(latencies) / wall, 2),
            "p50_ms": round(quantile(latencies, 50), 1),
            "p99_ms": round(quantile(latencies, 99), 1), "errors": len(errors)}


async def stream_timing(port: int, sentences: list[str], body: dict[str, Any]
                        ) -> dict[str, float]:
    """Milliseconds to the first sentence event and to the final event of
    ``/translate/stream`` for the sentences as one text, and of ``/translate`` for the same
    text (one string: translated whole when it fits the model) and for the sentence list."""
    text = " ".join(sentences)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300) as http:
        started = time.perf_counter()
        first = None
        async with http.stream("POST", "/translate/stream", json={**body, "text": text}) as r:
            async for line in r.aiter_lines():
                if line.startswith("event: sentence") and first is None:
                    first = time.perf_counter() - started
        total = time.perf_counter() - started
        timings = {}
        for name, payload in (("translate_text_ms", text), ("translate_list_ms", sentences)):
            started = time.perf_counter()
            response = await http.post("/translate", json={**body, "text": payload})
            assert response.status_code == 200, response.text
            timings[name] = round(1000 * (time.perf_counter() - started), 1)
    return {"stream_first_sentence_ms": round(1000 * (first or total), 1),
            "stream_done_ms": round(1000 * total, 1), **timings}


def server_env(mode: str, args: argparse.Namespace) -> dict[str, str]:
    """Environment of the server for one batching mode."""
    env = {"TRANSLATE_BATCHING": mode, "TRANSLATE_DEFAULT_MODELS": args.model}
    if mode == "continuous" and args.continuous_budget:
        env["TRANSLATE_MAX_BATCH_TOKENS"] = str(args.continuous_budget)
    return env


def measure(ports: dict[str, int], args: argparse.Namespace, sentences: list[str]
            ) -> list[dict[str, Any]]:
    """Every measurement, both servers up, the modes taking turns."""
    body = {"model": args.model, "beam_size": args.beam}
    rows: list[dict[str, Any]] = []
    for mode in MODES:  # warm both (first-call allocations, thread pools)
        asyncio.run(load(ports[mode], sentences, args.saturate_clients, args.warmup, body))
    for index in range(args.rounds):
        for mode in taking_turns(index):
            result = asyncio.run(load(ports[mode], sentences, args.saturate_clients,
                                      args.seconds, body))
            rows.append({"mode": mode, "kind": "saturated", "round": index, **result})
            print(json.dumps(rows[-1]), flush=True)
    capacity = statistics.median(r["sentences_per_s"] for r in rows
                                 if r["mode"] == "request")
    for index, fraction in enumerate(args.loads):
        for turn in range(args.load_rounds):
            for mode in taking_turns(index + turn):
                result = asyncio.run(open_loop(ports[mode], sentences, fraction * capacity,
                                               args.seconds, body,
                                               seed=int(100 * fraction) + 1000 * turn))
                rows.append({"mode": mode, "kind": "open_loop", "load": fraction,
                             "round": turn, **result})
                print(json.dumps(rows[-1]), flush=True)
    for mode in MODES:
        rows.append({"mode": mode, "kind": "stream",
                     **asyncio.run(stream_timing(ports[mode], sentences[:10], body))})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m bench.continuous", description=__doc__)
    cli.add_argument("--models", type=Path, default=Path("models"))
    cli.add_argument("--model", default="transformer-en-fr")
    cli.add_argument("--data", type=Path, default=Path("data/en-fr/test.jsonl"))
    cli.add_argument("--beam", type=int, default=4)
    cli.add_argument("--seconds", type=float, default=30, help="per measurement")
    cli.add_argument("--rounds", type=int, default=3,
                     help="saturated measurements per mode, taking turns")
    cli.add_argument("--warmup", type=float, default=3, help="seconds of load before measuring")
    cli.add_argument("--load-rounds", type=int, default=3,
                     help="open-loop runs per mode and load, taking turns (single runs at 70 %% "
                     "load scatter widely)")
    cli.add_argument("--saturate-clients", type=int, default=64)
    cli.add_argument("--loads", type=lambda s: [float(x) for x in s.split(",")],
                     default=[0.5, 0.7, 0.9])
    cli.add_argument("--continuous-budget", type=int,
                     help="TRANSLATE_MAX_BATCH_TOKENS of the continuous server (default: the "
                     "service default, as for request-level)")
    cli.add_argument("--out", type=Path)
    cli.add_argument("--png", type=Path)
    return cli


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    sentences = sample_verses(args.data, 2000)
    if sentences is None:
        return 2
    with ExitStack() as servers:
        ports = {mode: servers.enter_context(serving(args.models, server_env(mode, args)))
                 for mode in MODES}
        rows = measure(ports, args, sentences)
    finish(rows, args.out, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
