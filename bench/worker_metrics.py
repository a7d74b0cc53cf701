"""``python -m bench.worker_metrics [--modes request,continuous] [--budget N]``: where a
batching mode's capacity goes, from the service's own metrics.

For each mode (``TRANSLATE_BATCHING``, optionally ``TRANSLATE_MAX_BATCH_TOKENS``): start
``python -m service``, scrape ``/metrics``, run a closed-loop saturated load
(``bench.load``), scrape again, and print one JSON line: sentences/s, the share of the wall
time the model's worker spent in engine calls, engine calls, decoder steps, target tokens,
and engine milliseconds per decoder step and per target token. A worker that is busy all the
time but slower per token does more work per token; one that is idle part of the time is
starved (by the event loop, or for requests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx

from bench.load import load, serving
from training.data import read_examples

METRICS = {"engine_seconds": "translate_engine_seconds_sum",
           "engine_calls": "translate_engine_seconds_count",
           "decode_steps": "translate_decode_steps_total",
           "target_tokens": "translate_target_tokens_total"}


def scrape(port: int, model: str) -> dict[str, float]:
    """The model's counters from ``/metrics`` (0 for a counter not yet exported)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    values = {}
    for key, name in METRICS.items():
        found = re.search(rf'^{name}\{{[^}}]*model="{re.escape(model)}"[^}}]*\}} (\S+)$',
                          text, re.M)
        values[key] = float(found.group(1)) if found else 0.0
    return values


def measure(mode: str, args: argparse.Namespace, sentences: list[str]) -> dict[str, Any]:
    """One server in ``mode`` under saturated load; the row described in the module doc."""
    env = {"TRANSLATE_BATCHING": mode, "TRANSLATE_DEFAULT_MODELS": args.model}
    if args.budget:
        env["TRANSLATE_MAX_BATCH_TOKENS"] = str(args.budget)
    with serving(args.models, env) as port:
        before, started = scrape(port, args.model), time.perf_counter()
        result = asyncio.run(load(port, sentences, args.clients, args.seconds,
                                  {"model": args.model, "beam_size": args.beam}))
        wall = time.perf_counter() - started
        after = scrape(port, args.model)
    delta = {key: after[key] - before[key] for key in METRICS}
    engine_ms = 1000 * delta["engine_seconds"]
    return {"mode": mode, "budget": args.budget, "clients": args.clients, "beam": args.beam,
            "sentences_per_s": result["sentences_per_s"], "errors": result["errors"],
            "worker_busy": round(delta["engine_seconds"] / wall, 3),
            "engine_calls": int(delta["engine_calls"]),
            "decode_steps": int(delta["decode_steps"]),
            "target_tokens": int(delta["target_tokens"]),
            "engine_ms_per_step": round(engine_ms / max(1.0, delta["decode_steps"]), 2),
            "engine_ms_per_target_token": round(engine_ms / max(1.0, delta["target_tokens"]),
                                                3)}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    cli = argparse.ArgumentParser(prog="python -m bench.worker_metrics", description=__doc__)
    cli.add_argument("--models", type=Path, default=Path("models"))
    cli.add_argument("--model", default="transformer-en-fr")
    cli.add_argument("--data", type=Path, default=Path("data/en-fr/test.jsonl"))
    cli.add_argument("--modes", default="request,continuous")
    cli.add_argument("--budget", type=int, help="TRANSLATE_MAX_BATCH_TOKENS (default: the "
                     "service's)")
    cli.add_argument("--beam", type=int, default=4)
    cli.add_argument("--clients", type=int, default=64)
    cli.add_argument("--seconds", type=float, default=20)
    cli.add_argument("--out", type=Path)
    args = cli.parse_args(argv)
    if not args.data.is_file():
        print(f"{args.data} not found: run `make data` first", file=sys.stderr)
        return 2
    sentences = [example.src for example in read_examples(args.data)]
    rows = [measure(mode, args, sentences) for mode in args.modes.split(",")]
    lines = [json.dumps(row) for row in rows]
    print("\n".join(lines), flush=True)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
