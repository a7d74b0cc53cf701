"""``python -m bench.training_recipes``: training-step speed of recipe variants, side by side.

Every variant starts from the same weights and optimizer state and runs the same batches of the
real training split (the trainer's own length-bucketed plan), taking turns in each round, so a
noisy machine affects all alike. Per variant: median steps/s and target tokens/s, and the mean
training loss over the steps against the fp32 baseline's (same init, same batches: a recipe that
loses quality shows here before it shows in BLEU).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from training.config import TrainConfig, load_config
from training.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {"precision": "fp32"},
    "bf16": {"precision": "bf16"},
    "compile": {"precision": "fp32", "compile": True},
    "bf16-compile": {"precision": "bf16", "compile": True},
    "threads1": {"precision": "fp32", "threads": 1},
    "threads2": {"precision": "fp32", "threads": 2},
}


Measured = tuple[list[float], list[float], list[int]]  # per step: seconds, loss, target tokens


@dataclass
class Arm:
    """One variant: its trainer and the state every round restarts from."""

    name: str
    trainer: Trainer
    start: dict[str, Any]
    threads: int


def make_arm(name: str, base: TrainConfig, out: Path) -> Arm:
    """A trainer for variant ``name`` whose model and optimizer state can be reset."""
    overrides = VARIANTS[name]
    cfg = replace(base, out=str(out / name), **{k: v for k, v in overrides.items()
                                                if k != "threads"})
    threads = int(overrides.get("threads", base.threads or torch.get_num_threads()))
    torch.set_num_threads(threads)
    trainer = Trainer(cfg)
    start = {"model": copy.deepcopy(trainer.model.state_dict()),
             "optimizer": copy.deepcopy(trainer.optimizer.state_dict()),
             "scheduler": copy.deepcopy(trainer.scheduler.state_dict())}
    return Arm(name, trainer, start, threads)


def run_steps(arm: Arm, plan: list[Any]) -> Measured:
    """Reset ``arm`` and train one step per batch of ``plan``: seconds, losses, tokens."""
    trainer = arm.trainer
    torch.set_num_threads(arm.threads)
    trainer.model.load_state_dict(arm.start["model"])
    trainer.optimizer.load_state_dict(arm.start["optimizer"])
    trainer.scheduler.load_state_dict(arm.start["scheduler"])
    seconds, losses, tokens = [], [], []
    for index in plan:
        started = time.perf_counter()
        loss, count = trainer.train_step([index])
        seconds.append(time.perf_counter() - started)
        losses.append(loss)
        tokens.append(count)
    return seconds, losses, tokens


def summarise(name: str, rounds: list[Measured],
              baseline_loss: float | None) -> dict[str, Any]:
    """Median over rounds of the per-round throughput; loss of the last round."""
    per_round = [(len(s) / sum(s), sum(t) / sum(s)) for s, _, t in rounds]
    mean_loss = statistics.fmean(rounds[-1][1])
    row = {"variant": name, "steps_s": round(statistics.median(r[0] for r in per_round), 3),
           "tok_s": round(statistics.median(r[1] for r in per_round), 1),
           "rounds_tok_s": [round(r[1], 1) for r in per_round],
           "mean_loss": round(mean_loss, 4)}
    if baseline_loss is not None:
        row["loss_vs_fp32"] = round(mean_loss / baseline_loss, 4)
    return row


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m bench.training_recipes", description=__doc__)
    cli.add_argument("--config", type=Path, default=ROOT / "configs/transformer-en-fr.yaml")
    cli.add_argument("--variants", default="fp32,bf16,compile,bf16-compile,threads1,threads2")
    cli.add_argument("--steps", type=int, default=20, help="timed steps per round")
    cli.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation)")
    cli.add_argument("--rounds", type=int, default=3)
    cli.add_argument("--limit-train", type=int, default=20000)
    cli.add_argument("--init-from", default="", help="weights to start from (default: random)")
    cli.add_argument("overrides", nargs="*", help="config key=value, e.g. max_tokens=3000")
    args = cli.parse_args(argv)
    names = args.variants.split(",")
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        cli.error(f"unknown variants {unknown}: use {', '.join(VARIANTS)}")
    base = replace(load_config(args.config, args.overrides), limit_train=args.limit_train,
                   init_from=args.init_from, eval_every=10**9)
    with tempfile.TemporaryDirectory() as tmp:
        arms = [make_arm(name, base, Path(tmp)) for name in names]
        plan = arms[0].trainer._batches()[: args.warmup + args.steps]
        for arm in arms:  # compilation and allocator warm-up, not timed
            run_steps(arm, plan[: args.warmup])
        results: dict[str, list[Measured]] = {name: [] for name in names}
        for _ in range(args.rounds):
            for arm in arms:
                results[arm.name].append(run_steps(arm, plan[args.warmup:]))
    baseline = statistics.fmean(results["fp32"][-1][1]) if "fp32" in results else None
    for name in names:
        print(json.dumps({"config": args.config.stem, **summarise(name, results[name], baseline),
                          "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
