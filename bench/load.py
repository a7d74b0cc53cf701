"""``python -m bench.load``: closed-loop HTTP load against the real server (issue 5).

Starts ``python -m service`` on a free port with the given models, measures time to ready and
resident memory, then for 1, 8, 32 and 64 concurrent clients sends single sentences of the
test split (``POST /translate``) for a fixed time: sentences/s, p50/p95/p99 latency, errors.
Also compares one request's latency over HTTP with the engine's own for the same sentence.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx

from training.data import read_examples


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(models: Path, port: int, env: dict[str, str]) -> tuple[subprocess.Popen, float]:
    """The server process and its seconds until /health/ready answers 200."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "service", "--port", str(port),
                                "--models", str(models), "--log-level", "warning"],
                               env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}/health/ready"
    while time.perf_counter() - started < 120:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return process, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not become ready within 120 s")


@contextmanager
def serving(models: Path, env: dict[str, str]) -> Iterator[int]:
    """A server on a free port (yields the port), stopped with SIGTERM on the way out."""
    port = free_port()
    process, _ = start_server(models, port, env)
    try:
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


async def client(http: httpx.AsyncClient, sentences: list[str], offset: int, stop: float,
                 body: dict[str, Any], latencies: list[float], errors: list[int]) -> None:
    index = offset
    while time.perf_counter() < stop:
        started = time.perf_counter()
        response = await http.post("/translate", json={**body, "text": sentences[index]})
        if response.status_code == 200:
            latencies.append(time.perf_counter() - started)
        else:
            errors.append(response.status_code)
        index = (index + 1) % len(sentences)


async def load(port: int, sentences: list[str], clients: int, seconds: float,
               body: dict[str, Any]) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[int] = []
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits,
                                 timeout=120) as http:
        stop = time.perf_counter() + seconds
        started = time.perf_counter()
        await asyncio.gather(*(client(http, sentences, i * 7, stop, body, latencies, errors)
                               for i in range(clients)))
        wall = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {"clients": clients, "sentences_per_s": round(len(latencies) / wall, 2),
            "p50_ms": round(1000 * cuts[49], 1), "p95_ms": round(1000 * cuts[94], 1),
            "p99_ms": round(1000 * cuts[98], 1), "ok": len(latencies), "errors": len(errors)}


def engine_latency(bundle: Path, sentence: str, beam: int, threads: int | None) -> float:
    """Median seconds of the engine alone translating one sentence."""
    from inference import Translator

    translator = Translator.load(bundle, threads=threads)
    times = []
    for _ in range(7):
        started = time.perf_counter()
        translator.translate([sentence], beam_size=beam)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def engine_scaling(bundle: Path, sentences: list[str], beam: int, batch: int) -> float:
    """Sentences/s of the engine alone (no HTTP) translating ``sentences`` in batches of
    ``batch``: the ceiling for what concurrency can gain over one client."""
    from inference import Translator

    translator = Translator.load(bundle)
    translator.translate(sentences[:2], beam_size=beam)
    started = time.perf_counter()
    for index in range(0, len(sentences), batch):
        translator.translate(sentences[index: index + batch], beam_size=beam)
    return len(sentences) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    cli.add_argument("--models", type=Path, default=Path("models"))
    cli.add_argument("--model", default="transformer-en-fr", help="bundle to load")
    cli.add_argument("--data", type=Path, default=Path("data/en-fr/test.jsonl"))
    cli.add_argument("--clients", default="1,8,32,64")
    cli.add_argument("--seconds", type=float, default=20)
    cli.add_argument("--beam", type=int, default=4)
    cli.add_argument("--batching", choices=["request", "continuous"], default="continuous",
                     help="TRANSLATE_BATCHING of the server")
    cli.add_argument("--out", type=Path)
    args = cli.parse_args(argv)
    sentences = [e.src for e in read_examples(args.data) if e.src_version == "k"]
    port = free_port()
    process, ready_s = start_server(args.models, port, {"TRANSLATE_BATCHING": args.batching})
    rows: list[dict[str, Any]] = [{"batching": args.batching, "ready_s": round(ready_s, 2),
                                   "rss_mb_ready": round(rss_mb(process.pid), 1)}]
    try:
        body = {"model": args.model, "beam_size": args.beam}
        for clients in (int(c) for c in args.clients.split(",")):
            rows.append(asyncio.run(load(port, sentences, clients, args.seconds, body)))
            print(json.dumps(rows[-1]), flush=True)
        rows.append({"rss_mb_after_load": round(rss_mb(process.pid), 1)})
        single = asyncio.run(load(port, sentences[:1], 1, 5, body))
        engine = engine_latency(args.models / args.model, sentences[0], args.beam, None)
        sample = sentences[:128]
        rows.append({f"engine_sentences_per_s_batch_{batch}": round(
            engine_scaling(args.models / args.model, sample, args.beam, batch), 2)
            for batch in (1, 32)})
        rows.append({"http_p50_ms_one_sentence": single["p50_ms"],
                     "engine_ms_one_sentence": round(1000 * engine, 1),
                     "http_over_engine": round(single["p50_ms"] / (1000 * engine), 2)})
    finally:
        process.send_signal(signal.SIGTERM)
        rows.append({"exit_code_after_sigterm": process.wait(timeout=60)})
    for row in rows:
        print(json.dumps(row))
    if args.out:
        args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
