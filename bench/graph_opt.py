"""``python -m bench.graph_opt BUNDLE``: node counts and decoder-step speed of a bundle's graphs
at each ONNX Runtime graph-optimization level (what ``inference.session`` applies)."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from inference.bundle import read_manifest
from inference.onnx_decoder import OnnxModel

LEVELS = {"disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
          "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


def session(path: Path, level: str, threads: int, save: Path | None = None
            ) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = LEVELS[level]
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    if save is not None:
        options.optimized_model_filepath = str(save)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def node_count(path: Path) -> int:
    return len(onnx.load(str(path), load_external_data=False).graph.node)


def step_ms(bundle: Path, level: str, threads: int, batch: int, steps: int) -> float:
    """Median milliseconds of one decoder step (batch rows, source length 30)."""
    manifest = read_manifest(bundle)
    model = OnnxModel(manifest, session(bundle / "encoder.onnx", level, threads),
                      session(bundle / "decoder.onnx", level, threads))
    rng = np.random.default_rng(0)
    ids = rng.integers(4, 100, (batch, 30)).astype(np.int64)
    state = model.encode(ids, np.ones_like(ids))
    tokens = np.full(batch, manifest.special_tokens["decoder_start"], dtype=np.int64)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        log_probs, state = model.step(tokens, state)
        times.append(time.perf_counter() - started)
        tokens = log_probs.argmax(-1).astype(np.int64)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m bench.graph_opt", description=__doc__)
    cli.add_argument("bundles", nargs="+", type=Path)
    cli.add_argument("--threads", type=int, default=2)
    cli.add_argument("--batch", type=int, default=16)
    cli.add_argument("--steps", type=int, default=30)
    args = cli.parse_args(argv)
    for bundle in args.bundles:
        with tempfile.TemporaryDirectory() as tmp:
            for level in LEVELS:
                counts = {}
                for graph in ("encoder.onnx", "decoder.onnx"):
                    saved = Path(tmp) / f"{level}-{graph}"
                    session(bundle / graph, level, args.threads, saved)
                    counts[graph] = {"file": node_count(bundle / graph),
                                     "optimized": node_count(saved)}
                ms = step_ms(bundle, level, args.threads, args.batch, args.steps)
                print(json.dumps({"bundle": str(bundle), "level": level, "nodes": counts,
                                  "decoder_step_ms": round(ms, 3), "batch": args.batch,
                                  "threads": args.threads}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
