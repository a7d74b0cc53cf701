"""Training-time decoding over the torch model protocol.

Greedy is a plain torch loop (an independent reference for the ONNX parity tests); beam search
reuses the serving engine's numpy search so both runtimes score hypotheses identically.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from inference.beam import beam_search
from inference.options import DecodeOptions
from inference.search import Candidates, top_k
from training.data import Example
from training.metrics import corpus_scores
from training.models.protocol import Seq2SeqModel, State


@torch.no_grad()
def greedy_decode(model: Seq2SeqModel, src_ids: Tensor, src_mask: Tensor, *, start_id: int,
                  eos_id: int, max_len: int) -> list[list[int]]:
    """Greedy ids (without start, eos kept off) for ``(B, S)`` inputs; finished rows leave."""
    batch = src_ids.size(0)
    state = model.encode(src_ids, src_mask)
    alive = torch.arange(batch)
    tokens = torch.full((batch,), start_id, dtype=torch.long)
    outputs: list[list[int]] = [[] for _ in range(batch)]
    for _ in range(max_len):
        log_probs, state = model.step(tokens, state)
        tokens = log_probs.argmax(-1)
        keep = []
        for row, (original, token) in enumerate(zip(alive.tolist(), tokens.tolist(), strict=True)):
            if token == eos_id:
                continue
            outputs[original].append(token)
            keep.append(row)
        if not keep:
            break
        if len(keep) < len(alive):
            index = torch.tensor(keep)
            state, alive, tokens = model.reorder(state, index), alive[index], tokens[index]
    return outputs


class _NumpyAdapter:
    """The torch protocol seen through numpy, for the serving engine's pure search code."""

    def __init__(self, model: Seq2SeqModel) -> None:
        self.model = model

    def step(self, tokens: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        log_probs, state = self.model.step(torch.from_numpy(tokens), state)
        return log_probs.numpy(), state

    def step_top_k(self, tokens: np.ndarray, state: State, k: int) -> tuple[Candidates, State]:
        log_probs, state = self.step(tokens, state)
        return top_k(log_probs, k), state

    def reorder(self, state: State, index: np.ndarray) -> State:
        return self.model.reorder(state, torch.from_numpy(index))


@torch.no_grad()
def beam_decode(model: Seq2SeqModel, src_ids: Tensor, src_mask: Tensor, *, beam: int,
                start_id: int, eos_id: int, max_len: int, length_penalty: float = 1.0,
                ) -> list[list[int]]:
    """Best beam hypothesis per input (at most ``max_len`` ids, eos off), with exactly the
    serving engine's search (``inference.beam``) so scores agree across runtimes."""
    state = model.encode(src_ids, src_mask)
    options = DecodeOptions(beam_size=beam, length_penalty=length_penalty)
    results = beam_search(_NumpyAdapter(model), state, batch=src_ids.size(0), start_id=start_id,
                          eos_id=eos_id, max_length=np.full(src_ids.size(0), max_len),
                          options=options)
    return [hyps[0].tokens for hyps in results]


@torch.no_grad()
def greedy_bleu(model: Seq2SeqModel, tokenizer: Any, examples: list[Example], *, start_id: int,
                eos_id: int, device: torch.device | None = None, chunk: int = 50) -> float:
    """Corpus BLEU of greedy translations of ``examples`` (their single reference), decoded
    ``chunk`` sources at a time; the model is left in eval mode."""
    model.eval()
    hyps: list[str] = []
    for start in range(0, len(examples), chunk):
        part = examples[start : start + chunk]
        enc = tokenizer([e.src for e in part], padding=True, return_tensors="pt")
        ids = greedy_decode(model, enc["input_ids"].to(device), enc["attention_mask"].to(device),
                            start_id=start_id, eos_id=eos_id,
                            max_len=2 * enc["input_ids"].size(1) + 10)
        hyps += tokenizer.batch_decode(ids, skip_special_tokens=True)
    return float(corpus_scores(hyps, [[e.tgt for e in examples]])["bleu"])
