"""``python -m training.train --config FILE [key=value ...]``: train a translation model.

Token-based length-bucketed batches, label-smoothed cross-entropy, AdamW with warm-up and
inverse-square-root decay, gradient clipping and accumulation, dev-BLEU early stopping,
checkpoints with exact resume, DDP through ``torchrun`` (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from training.batching import Batch, collate, plan_batches
from training.checkpoint import (
    CHECKPOINT,
    keep_snapshot,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    save_model_dir,
    set_rng_state,
    start_config,
    start_model,
)
from training.config import TrainConfig, load_config, save_config, tokenizer_dir
from training.corpus import TokenizedSplit, dev_subset, get_tokenizer, load_split, tokenize
from training.decode import greedy_bleu
from training.errors import UserError, run_cli
from training.metrics import plot_curves
from training.models import build_model
from training.precision import autocast_dtype
from training.tokenizer import load_tokenizer


@dataclass
class Progress:
    """Where the loop is; saved in checkpoints."""

    step: int = 0
    epoch: int = 0
    batch_pos: int = 0
    best_bleu: float = -1.0
    bad_evals: int = 0
    elapsed: float = 0.0
    target_tokens: int = 0


def inverse_sqrt(warmup: int) -> Callable[[int], float]:
    """LR multiplier: linear warm-up, then ``sqrt(warmup / step)``."""
    def factor(step: int) -> float:
        step = max(step, 1)
        return min(step / warmup, math.sqrt(warmup / step))
    return factor


def world() -> tuple[int, int]:
    """(rank, world size), initialising the process group under torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo",
                                timeout=timedelta(minutes=5))
    return (dist.get_rank(), size) if size > 1 else (0, 1)


def device_for(rank: int) -> torch.device:
    """The CUDA device of this rank when there is one, else the CPU."""
    if torch.cuda.is_available():
        torch.cuda.set_device(rank % torch.cuda.device_count())
        return torch.device("cuda", rank % torch.cuda.device_count())
    return torch.device("cpu")


class Trainer:
    """Owns model, optimizer, data and progress of one run."""

    def __init__(self, cfg: TrainConfig) -> None:
        if cfg.init_from:  # the checkpoint decides the architecture and the tokenizer
            try:
                cfg = replace(cfg, model=start_config(Path(cfg.init_from)))
            except (OSError, ValueError) as err:
                raise UserError(f"init_from={cfg.init_from}: {err}".split("\n")[0]) from None
        self.cfg = cfg
        self.rank, self.world_size = world()
        self.device = device_for(self.rank)
        self.out = Path(cfg.out)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self._load_data()
        self.model = (start_model(Path(cfg.init_from), cfg.model) if cfg.init_from
                      else build_model(cfg.model))
        self.model.to(self.device)
        try:
            self.autocast = autocast_dtype(cfg.precision, self.device)
        except ValueError as err:
            raise UserError(str(err)) from None
        self.ddp: nn.Module = self.model
        if self.world_size > 1:
            self.ddp = nn.parallel.DistributedDataParallel(self.model)
        if cfg.compile:
            # dynamic: batch size and lengths change every step; static shapes recompile per shape
            self.ddp = torch.compile(self.ddp, dynamic=True)  # type: ignore[assignment]
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.98),
                                           eps=1e-9, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, inverse_sqrt(cfg.warmup))
        self.progress = Progress()
        self._maybe_resume()

    def _load_data(self) -> None:
        cfg = self.cfg
        data = Path(cfg.data)
        train_examples = load_split(data, "train", cfg.limit_train)
        tok_dir = Path(cfg.init_from) if cfg.init_from else tokenizer_dir(cfg)
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            if not cfg.init_from:
                get_tokenizer(tok_dir, train_examples, vocab_size=cfg.model.vocab_size,
                              algorithm=cfg.tokenizer_algorithm, seed=cfg.seed)
        if self.world_size > 1:
            dist.barrier()
        self.tokenizer = (load_tokenizer(tok_dir) if cfg.init_from else
                          get_tokenizer(tok_dir, train_examples, vocab_size=cfg.model.vocab_size,
                                        algorithm=cfg.tokenizer_algorithm, seed=cfg.seed))
        if len(self.tokenizer) > cfg.model.vocab_size:
            raise UserError(f"tokenizer has {len(self.tokenizer)} tokens but model.vocab_size is "
                            f"{cfg.model.vocab_size}: raise model.vocab_size")
        self.train: TokenizedSplit = tokenize(self.tokenizer, train_examples, cfg.max_len)
        self.dev = dev_subset(load_split(data, "dev"), cfg.dev_pairs, cfg.dev_size)
        manifest = data / "manifest.json"
        info = json.loads(manifest.read_text()) if manifest.is_file() else {}
        self.languages = {k: info[k] for k in ("src_lang", "tgt_lang") if k in info}

    def _maybe_resume(self) -> None:
        path = self.out / CHECKPOINT
        if not path.is_file():
            return
        payload = load_checkpoint(path, self.cfg.model)
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        set_rng_state(payload["rng"])
        self.progress = Progress(**payload["progress"])

    def _checkpoint(self) -> None:
        save_checkpoint(self.out / CHECKPOINT, {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": rng_state(),
            "progress": asdict(self.progress), "model_config": asdict(self.cfg.model),
        })

    def _batches(self) -> list[Any]:
        """This rank's share of the current epoch's batches."""
        plan = plan_batches(self.train.src_lens, self.train.tgt_lens,
                            max_tokens=self.cfg.max_tokens, seed=self.cfg.seed,
                            epoch=self.progress.epoch)
        usable = len(plan) - len(plan) % self.world_size
        return plan[self.rank : usable : self.world_size]

    def _make_batch(self, index: Any) -> Batch:
        mc = self.cfg.model
        return collate([self.train.src[i] for i in index], [self.train.tgt[i] for i in index],
                       pad_id=mc.pad_id, start_id=mc.decoder_start_id)

    def _loss(self, batch: Batch) -> tuple[torch.Tensor, int]:
        """Summed label-smoothed CE over target tokens, and their count."""
        dev = self.device
        with torch.autocast(dev.type, dtype=self.autocast or torch.bfloat16,
                            enabled=self.autocast is not None):
            logits = self.ddp(batch.src.to(dev), batch.src_mask.to(dev), batch.tgt_in.to(dev))
        loss = nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)), batch.tgt_out.to(dev).reshape(-1),
            ignore_index=-100, label_smoothing=self.cfg.label_smoothing, reduction="sum")
        return loss, batch.target_tokens

    def train_step(self, group: list[Any]) -> tuple[float, int]:
        """One optimizer update over ``accumulate`` batches; returns (mean loss, tokens)."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total_loss, total_tokens = 0.0, 0
        for index in group:
            loss, tokens = self._loss(self._make_batch(index))
            loss.backward()
            total_loss, total_tokens = total_loss + loss.item(), total_tokens + tokens
        for param in self.model.parameters():
            if param.grad is not None:
                param.grad.div_(max(1, total_tokens))
        nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.progress.step += 1
        self.progress.target_tokens += total_tokens
        return total_loss / max(1, total_tokens), total_tokens

    def evaluate_dev(self) -> float:
        """Greedy dev BLEU on the configured subset."""
        mc = self.cfg.model
        return greedy_bleu(self.model, self.tokenizer, self.dev, start_id=mc.decoder_start_id,
                           eos_id=mc.eos_id, device=self.device)

    def _log(self, row: dict[str, Any]) -> None:
        if self.rank == 0:
            with (self.out / "metrics.jsonl").open("a") as log:
                log.write(json.dumps(row) + "\n")

    def _after_eval(self, bleu: float) -> None:
        """Track the best model, patience, checkpoint and curves (rank 0)."""
        prog = self.progress
        if bleu > prog.best_bleu:
            prog.best_bleu, prog.bad_evals = bleu, 0
            save_model_dir(self.model, self.cfg.model, self.out / "best",
                           {"step": prog.step, "dev_bleu_greedy": bleu, **self.languages})
            self.tokenizer.save_pretrained(str(self.out / "best"))
        else:
            prog.bad_evals += 1
        if self.cfg.keep_last:
            keep_snapshot(self.model, self.cfg.model, self.out, prog.step, self.cfg.keep_last,
                          {"dev_bleu_greedy": bleu, **self.languages})
        self._checkpoint()
        plot_curves(self.out / "metrics.jsonl", self.out / "curves.png")

    def should_stop(self, started: float) -> bool:
        cfg, prog = self.cfg, self.progress
        minutes = (prog.elapsed + time.time() - started) / 60
        return (prog.step >= cfg.max_steps or prog.bad_evals >= cfg.patience
                or bool(cfg.max_minutes and minutes >= cfg.max_minutes))

    def _evaluate_and_save(self, started: float) -> None:
        if self.rank == 0:
            self.progress.elapsed += time.time() - started
            bleu = self.evaluate_dev()
            self._log({"kind": "dev", "step": self.progress.step, "bleu": bleu,
                       "target_tokens": self.progress.target_tokens})
            self._after_eval(bleu)
        if self.world_size > 1:
            flags = torch.tensor([self.progress.bad_evals], dtype=torch.long)
            dist.broadcast(flags, 0)
            self.progress.bad_evals = int(flags.item())

    def run(self) -> Progress:
        """Train until max_steps, max_minutes or patience; returns the final progress."""
        cfg, prog = self.cfg, self.progress
        started, window_tokens, window_start = time.time(), 0, time.time()
        bar = tqdm(total=cfg.max_steps, initial=prog.step, disable=self.rank != 0, unit="step")
        while not self.should_stop(started):
            batches = self._batches()
            while prog.batch_pos + cfg.accumulate <= len(batches) and not self.should_stop(started):
                group = batches[prog.batch_pos : prog.batch_pos + cfg.accumulate]
                prog.batch_pos += cfg.accumulate
                loss, tokens = self.train_step(group)
                window_tokens += tokens
                bar.update(1)
                if prog.step % cfg.log_every == 0:
                    rate = window_tokens * self.world_size / max(1e-9, time.time() - window_start)
                    bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rate:.0f}")
                    self._log({"kind": "train", "step": prog.step, "loss": loss, "tok_s": rate,
                               "lr": self.scheduler.get_last_lr()[0]})
                    window_tokens, window_start = 0, time.time()
                if prog.step % cfg.eval_every == 0:
                    self._evaluate_and_save(started)
                    started = time.time()
            else:
                if prog.batch_pos + cfg.accumulate > len(batches):
                    prog.epoch, prog.batch_pos = prog.epoch + 1, 0
        if prog.step % cfg.eval_every:
            self._evaluate_and_save(started)
        bar.close()
        return prog


def parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    cli = argparse.ArgumentParser(prog="python -m training.train", description=__doc__)
    cli.add_argument("--config", type=Path, help="YAML file (see configs/)")
    cli.add_argument("overrides", nargs="*", help="key=value, e.g. lr=0.0005 model.layers=4")
    return cli


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parser().parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    trainer = Trainer(cfg)
    if trainer.rank == 0:
        save_config(trainer.cfg, Path(cfg.out) / "config.yaml")
    progress = trainer.run()
    if trainer.rank == 0:
        print(json.dumps({"out": cfg.out, **asdict(progress)}))
    if dist.is_initialized():
        dist.barrier()  # every rank leaves together: a rank that exits early can hang the rest
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
