"""``python -m bench``: training-step throughput of each architecture, side by side.

Runs the shipped configs' model sizes on identical synthetic batches in one process and prints
the median target tokens/s of each (and their ratio), so a noisy machine affects both alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from training.config import load_config
from training.models import build_model

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [ROOT / "configs/transformer-en-fr.yaml", ROOT / "configs/lstm-en-fr.yaml"]


def step_seconds(config: Path, *, batch: int, length: int, repeats: int) -> list[float]:
    """Wall time of forward+backward+Adam on a ``(batch, length)`` batch, per repeat."""
    cfg = load_config(config).model
    torch.manual_seed(0)
    model = build_model(cfg).train()
    optimizer = torch.optim.AdamW(model.parameters())
    src = torch.randint(4, cfg.vocab_size, (batch, length))
    mask = torch.ones_like(src)
    times = []
    for _ in range(repeats + 1):  # the first run warms up allocators
        started = time.perf_counter()
        logits = model(src, mask, src)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, cfg.vocab_size), src.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - started)
    return times[1:]


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line per architecture and the ratio of medians."""
    cli = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    cli.add_argument("--quick", action="store_true", help="tiny sizes: checks the bench runs")
    cli.add_argument("--threads", type=int, default=1)
    args = cli.parse_args(argv)
    torch.set_num_threads(args.threads)
    batch, length, repeats = (4, 8, 2) if args.quick else (64, 40, 7)
    medians = {}
    for config in CONFIGS:
        seconds = step_seconds(config, batch=batch, length=length, repeats=repeats)
        medians[config.stem] = batch * length / statistics.median(seconds)
        print(json.dumps({"config": config.stem, "threads": args.threads, "batch": batch,
                          "length": length, "median_tok_s": round(medians[config.stem], 1)}))
    first, second = (medians[c.stem] for c in CONFIGS)
    print(json.dumps({"ratio_transformer_over_lstm": round(first / second, 2),
                      "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
