"""``python -m bench.vocab_cost BUNDLE [BUNDLE ...] [--model m2m100-256k] [--rows 1,64,256]``:
what a large vocabulary costs in one decoder step, from ONNX Runtime's node profile.

For each bundle and row count, the engine's decoder runs ``--steps`` steps over the bench
model's sources (``bench.engines``; 256 rows are 64 inputs of 4 beams, as beam 4 runs them),
asking the head for the candidates greedy (2) or beam 4 (9) asks for under a forced length.
Each node's kernel time goes to one part: the output projection (the nodes writing ``(rows,
vocab)`` logits, int8 dequantisation included), the log-softmax, the top-k head, or the rest of
the decoder. Prints one JSON line per bundle and row count: milliseconds per step and each
part's share. The profiler's own overhead is in the step time, not in the shares.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bench.engines import print_rows
from bench.random_models import MODELS, RandomModel
from inference import Translator
from inference.session import CPU, session_options

BEAM_ROWS = 4  # from this many rows per input on, the step is a beam 4 step
GREEDY_K, BEAM_K = 2, 9  # candidates asked for under min_length: k plus one for eos
WARM_UP = 2  # steps run (and left out of the shares) before the measured ones


def profiled(bundle: Path, threads: int, prefix: Path) -> Translator:
    """The engine over ``bundle`` with its decoder session (the engine's options) profiling
    every node."""
    import onnxruntime as ort

    translator = Translator.load(bundle, threads=threads, max_batch_tokens=1 << 20)
    options = session_options(threads, spinning=True)
    options.enable_profiling = True
    options.profile_file_prefix = str(prefix)
    translator.model.decoder = ort.InferenceSession(str(bundle / "decoder.onnx"), options,
                                                    providers=[CPU])
    return translator


def run_steps(translator: Translator, model: RandomModel, rows: int, steps: int) -> float:
    """Seconds per decoder step over ``rows`` rows (``(inputs, beams)`` as the searches
    lay them out)."""
    vocab = translator.manifest.vocab_size
    beams = BEAM_ROWS if rows >= 2 * BEAM_ROWS else 1
    sources = model.sources(vocab, max(1, rows // beams))
    width = max(map(len, sources))
    pad = translator.manifest.special_tokens["pad"]
    ids = np.array([s + [pad] * (width - len(s)) for s in sources], np.int64)
    decoder = translator.model
    state = decoder.encode(ids, (ids != pad).astype(np.int64), max_length=steps)
    if beams > 1:
        state = decoder.reorder(state, np.repeat(np.arange(len(sources)), beams))
    tokens = np.full(len(sources) * beams, translator.manifest.special_tokens["decoder_start"])
    k = BEAM_K if beams > 1 else GREEDY_K
    started = time.perf_counter()
    for _ in range(steps):
        found, state = decoder.step_top_k(tokens, state, k)
        tokens = found.ids[:, 0]
    return (time.perf_counter() - started) / steps


def part_of(event: dict[str, Any], vocab: int) -> str:
    """Which part of the step one node's profile ``event`` belongs to."""
    args = event["args"]
    if event["name"].startswith("top_k_head"):
        return "top_k_head"
    if args["op_name"] == "LogSoftmax":
        return "log_softmax"
    shapes = [next(iter(shape.values())) for shape in args.get("output_type_shape", [])]
    if any(shape and shape[-1] == vocab for shape in shapes):
        return "projection"
    return "rest"


def shares(profile: Path, vocab: int, skip: int) -> dict[str, float]:
    """Each part's share of the profiled node time after the first ``skip`` runs."""
    events = json.loads(profile.read_text())
    runs = sorted(e["ts"] + e["dur"] for e in events if e.get("name") == "model_run")
    start = runs[skip - 1] if skip else 0
    parts: Counter[str] = Counter()
    for event in events:
        if (event.get("cat") == "Node" and event["name"].endswith("_kernel_time")
                and event["ts"] >= start):
            parts[part_of(event, vocab)] += event["dur"]
    total = sum(parts.values()) or 1
    return {part: round(parts[part] / total, 3)
            for part in ("projection", "log_softmax", "top_k_head", "rest")}


def measure(bundle: Path, model: RandomModel, rows: int, steps: int, threads: int,
            work: Path) -> dict[str, Any]:
    """One JSON row: step time and shares of ``bundle`` at ``rows`` rows."""
    translator = profiled(bundle, threads, work / "profile")
    run_steps(translator, model, rows, WARM_UP)
    seconds = run_steps(translator, model, rows, steps)
    profile = Path(translator.model.decoder.end_profiling())
    split = shares(profile, translator.manifest.vocab_size, skip=WARM_UP)
    profile.unlink()
    return {"bundle": str(bundle), "rows": rows, "steps": steps, "threads": threads,
            "ms_per_step": round(1000 * seconds, 1), **split}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    cli = argparse.ArgumentParser(prog="python -m bench.vocab_cost", description=__doc__)
    cli.add_argument("bundles", type=Path, nargs="+")
    cli.add_argument("--model", choices=sorted(MODELS), default="m2m100-256k",
                     help="the bench.engines model the bundles were exported from")
    cli.add_argument("--rows", default="1,64,256", help="decoder rows, comma-separated")
    cli.add_argument("--steps", type=int, default=8)
    cli.add_argument("--threads", type=int, default=2)
    cli.add_argument("--work", type=Path, default=Path("runs/vocab-cost"))
    cli.add_argument("--out", type=Path)
    args = cli.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [measure(bundle, MODELS[args.model], int(count), args.steps, args.threads,
                    args.work)
            for bundle in args.bundles for count in args.rows.split(",")]
    print_rows(rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
