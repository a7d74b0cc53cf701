"""``python -m bench.soak``: a soak of mixed load against the real server (issue 7).

Starts ``python -m service`` (helpers of ``bench.load``), then for ``--minutes`` (at least 10
by default) runs ``--clients`` closed-loop clients sending a mix: single sentences, lists of
four, beam 1 and beam 4, and about 5 % invalid requests (expected 422). Every ``--window``
seconds it prints throughput, p99 latency and the server's resident memory. At the end: RSS
when the server is ready (before any request), after the first window (warm: the runtime's
first-use allocations are done) and at the end, growth judged from the warm figure (must stay
under 10 %); the count of each status (-1: transport error); the unexpected answers (must be
zero: any status other than 200 for a valid request or 422 for an invalid one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx

from bench.load import free_port, rss_mb, start_server
from training.data import read_examples


@dataclass
class Window:
    """What happened in one reporting window."""

    latencies: list[float] = field(default_factory=list)
    expected_errors: int = 0
    unexpected: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    rss_mb: float = float("nan")


def request_mix(rng: random.Random, sentences: list[str], model: str
                ) -> tuple[dict[str, Any], int]:
    """One request body of the mix and the status it must get."""
    roll = rng.random()
    if roll < 0.05:
        return rng.choice([{"text": 5, "model": model}, {"model": model},
                           {"text": "x", "model": model, "beam_size": -1}]), 422
    text: str | list[str] = (rng.choice(sentences) if roll < 0.6
                             else rng.sample(sentences, 4))
    return {"text": text, "model": model, "beam_size": rng.choice([1, 4])}, 200


async def client(http: httpx.AsyncClient, seed: int, sentences: list[str], model: str,
                 stop: float, windows: list[Window], started: float, width: float) -> None:
    """A closed-loop client recording each answer in the window it finished in."""
    rng = random.Random(seed)
    while time.perf_counter() < stop:
        body, expected = request_mix(rng, sentences, model)
        began = time.perf_counter()
        try:
            status = (await http.post("/translate", json=body)).status_code
        except httpx.HTTPError as err:
            status, detail = -1, f"{type(err).__name__}: {err}"
        else:
            detail = f"status {status} for {json.dumps(body)[:120]}"
        window = windows[min(int((time.perf_counter() - started) / width), len(windows) - 1)]
        window.statuses[status] += 1
        if status == expected == 200:
            window.latencies.append(time.perf_counter() - began)
        elif status == expected:
            window.expected_errors += 1
        else:
            window.unexpected.append(detail)


async def monitor(pid: int, stop: float, windows: list[Window], width: float,
                  started: float) -> None:
    """Print one line per window: requests/s, p99 latency, RSS."""
    for index, window in enumerate(windows):
        await asyncio.sleep(max(0.0, started + (index + 1) * width - time.perf_counter()))
        done = window.latencies
        p99 = statistics.quantiles(done, n=100)[98] if len(done) > 1 else float("nan")
        window.rss_mb = rss_mb(pid)
        print(json.dumps({"t_s": round((index + 1) * width), "ok_per_s": round(len(done) / width,
                          2), "p99_ms": round(1000 * p99, 1), "rss_mb": round(window.rss_mb, 1),
                          "expected_4xx": window.expected_errors,
                          "unexpected": len(window.unexpected)}), flush=True)
        if time.perf_counter() >= stop:
            return


async def soak(port: int, pid: int, sentences: list[str], args: argparse.Namespace
               ) -> list[Window]:
    """Run the clients and the monitor for ``args.minutes``."""
    width = args.window
    windows = [Window() for _ in range(max(1, int(args.minutes * 60 / width)))]
    started = time.perf_counter()
    stop = started + args.minutes * 60
    limits = httpx.Limits(max_connections=args.clients)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits,
                                 timeout=120) as http:
        await asyncio.gather(
            monitor(pid, stop, windows, width, started),
            *(client(http, seed, sentences, args.model, stop, windows, started, width)
              for seed in range(args.clients)))
    return windows


def main(argv: list[str] | None = None) -> int:
    """Start the server, soak it, stop it with SIGTERM; exit 1 on unexpected answers or
    memory growth of 10 % or more from the warm figure."""
    cli = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    cli.add_argument("--models", type=Path, default=Path("models"))
    cli.add_argument("--model", default="transformer-en-fr", help="bundle to load")
    cli.add_argument("--data", type=Path, default=Path("data/en-fr/test.jsonl"))
    cli.add_argument("--minutes", type=float, default=10)
    cli.add_argument("--clients", type=int, default=16)
    cli.add_argument("--window", type=float, default=30, help="seconds per report line")
    args = cli.parse_args(argv)
    sentences = [e.src for e in read_examples(args.data) if e.src_version == "k"]
    port = free_port()
    process, _ = start_server(args.models, port, {})
    try:
        rss_start = rss_mb(process.pid)
        windows = asyncio.run(soak(port, process.pid, sentences, args))
        rss_end = rss_mb(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=60)
    unexpected = [detail for window in windows for detail in window.unexpected]
    rss_warm = windows[0].rss_mb
    growth = (rss_end - rss_warm) / rss_warm
    statuses = sum((w.statuses for w in windows), Counter[int]())
    print(json.dumps({"rss_mb_ready": round(rss_start, 1), "rss_mb_warm": round(rss_warm, 1),
                      "rss_mb_end": round(rss_end, 1),
                      "rss_growth_from_ready": round((rss_end - rss_start) / rss_start, 3),
                      "rss_growth_from_warm": round(growth, 3),
                      "requests": statuses.total(),
                      "statuses": {str(k): v for k, v in sorted(statuses.items())},
                      "ok": sum(len(w.latencies) for w in windows),
                      "expected_4xx": sum(w.expected_errors for w in windows),
                      "unexpected": len(unexpected), "examples": unexpected[:5],
                      "exit_code_after_sigterm": exit_code}))
    return 0 if not unexpected and growth < 0.10 and exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
