"""``python -m training.average RUN``: average the weights of a run's last snapshots.

A run trained with ``keep_last=N`` keeps the weights of its last N evaluations in
``RUN/snapshots/``. Their element-wise mean (fairseq's checkpoint averaging) usually scores
above any single one of them late in training, when updates make the weights circle the
optimum. The mean is written as ``RUN/averaged/`` (a model directory like ``RUN/best/``), and
both are scored with greedy BLEU on more dev verses than the training run's checks, so that
``python -m training.package RUN NAME --weights averaged`` is chosen on dev, not test, scores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import yaml

from training.checkpoint import load_model_dir, save_model_dir, snapshots
from training.corpus import dev_subset, load_split
from training.decode import greedy_bleu
from training.errors import UserError, run_cli
from training.models.config import ModelConfig
from training.models.factory import Seq2SeqModule
from training.tokenizer import load_tokenizer

AVERAGED = "averaged"
REPORT = "average.json"


def average_weights(directories: list[Path]) -> tuple[Seq2SeqModule, ModelConfig]:
    """The model of the first directory with every floating-point tensor replaced by the
    float32 mean over ``directories`` (integer buffers are the last one's); its config."""
    model, cfg = load_model_dir(directories[0])
    totals = {name: tensor.detach().float().clone()
              for name, tensor in model.state_dict().items()}
    last: dict[str, torch.Tensor] = {}
    for directory in directories[1:]:
        other, other_cfg = load_model_dir(directory)
        if other_cfg != cfg:
            raise UserError(f"{directory} holds another model configuration than "
                            f"{directories[0]}; average snapshots of one run")
        last = other.state_dict()
        for name, tensor in last.items():
            totals[name] += tensor.float()
    state = model.state_dict()
    for name, tensor in state.items():
        if tensor.is_floating_point():
            tensor.copy_(totals[name] / len(directories))
        elif name in last:
            tensor.copy_(last[name])
    return model, cfg


def write_average(run: Path, last: int) -> tuple[Path, list[int]]:
    """Average the newest ``last`` snapshots of ``run`` into ``run/averaged``; returns it and
    the steps averaged."""
    chosen = snapshots(run)[-last:]
    if len(chosen) < 2:
        raise UserError(f"{run} has {len(chosen)} snapshot(s) in snapshots/; train with "
                        "keep_last=N (N >= 2) to keep the weights of the last evaluations")
    model, cfg = average_weights(chosen)
    metas = [json.loads((d / "model_config.json").read_text()) for d in chosen]
    steps = [int(meta["step"]) for meta in metas]
    extra = {k: v for k, v in metas[-1].items() if k not in ("model", "step", "dev_bleu_greedy")}
    out = run / AVERAGED
    save_model_dir(model, cfg, out, {**extra, "averaged_steps": steps})
    load_tokenizer(run / "best").save_pretrained(str(out))
    return out, steps


def dev_scores(run: Path, directories: dict[str, Path], size: int) -> dict[str, float]:
    """Greedy BLEU of each model directory on the first ``size`` dev verses of the run's
    configured dev pair."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    examples = dev_subset(load_split(Path(config["data"]), "dev"), config.get("dev_pairs", ""),
                          size)
    scores = {}
    for label, directory in directories.items():
        model, cfg = load_model_dir(directory)
        scores[label] = greedy_bleu(model, load_tokenizer(directory), examples,
                                    start_id=cfg.decoder_start_id, eos_id=cfg.eos_id)
    return scores


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    cli = argparse.ArgumentParser(prog="python -m training.average", description=__doc__)
    cli.add_argument("run", type=Path, help="training run directory (with snapshots/ and best/)")
    cli.add_argument("--last", type=int, default=5, help="how many of the newest snapshots")
    cli.add_argument("--dev-size", type=int, default=1000, help="dev verses scored (greedy)")
    cli.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = cli.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out, steps = write_average(args.run, args.last)
    scores = dev_scores(args.run, {"best": args.run / "best", AVERAGED: out}, args.dev_size)
    report = {"steps": steps, "dev_size": args.dev_size,
              "best_step": json.loads((args.run / "best" / "model_config.json").read_text()
                                      ).get("step"),
              "dev_bleu_greedy": scores}
    (out / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
