"""Batched greedy and beam search in pure numpy over a step function and an explicit state.

The decoder is anything with ``step(tokens, state) -> (log_probs, state)``,
``step_top_k(tokens, state, k) -> (Candidates, state)`` and ``reorder(state, index) -> state``
over a state the search never looks into (STYLE.md 1-2); ``tokens`` is ``(rows,)`` int64,
log-probs are ``(rows, vocab)`` float32, and ``index`` selects rows on axis 0. Finished
inputs leave the batch at every step (STYLE.md 3), so the state shrinks as the batch completes.

The searches only ever look at each row's best few tokens (:class:`Candidates`): one for
greedy, ``2 * beam`` for beam search (the ``2 * beam`` best continuations of an input over all
its beams are among its beams' own ``2 * beam`` best), and asks ``step_top_k`` for them (an
in-graph top-k); with ``no_repeat_ngram_size`` the full log-probs are needed to ban tokens.

Semantics (the same as ``transformers``' ``generate`` for encoder-decoder models):
- ``max_length`` counts generated tokens, eos included; a row that reaches it stops with
  finish reason ``"length"``. ``min_length``: eos is forbidden before that many tokens.
- Beam scores are ``sum(log p) / length ** length_penalty`` (length includes eos), or with
  ``length_penalty_form="gnmt"``, ``sum(log p) / ((5 + length) / 6) ** length_penalty``.
- Each step keeps the top ``2 * beam`` candidates; those among the top ``beam`` that end in eos
  become finished hypotheses; the best ``beam`` unfinished ones continue. An input stops when
  it has ``beam`` finished hypotheses and its best running score, normalised at the current
  length, cannot beat the worst of them (``early_stopping=False`` of ``generate``), or, with
  ``early_stopping=True``, as soon as it has ``beam`` finished hypotheses.
- ``no_repeat_ngram_size=n`` forbids any n-gram from appearing twice in a hypothesis.

"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from service.inference.options import DecodeOptions

NEG_INF = -np.inf
FinishReason = Literal["eos", "length"]


class Decoder(Protocol):
    """What the search needs from a model; the state is opaque to it."""

    def step(self, tokens: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """``(rows,)`` tokens -> ``(rows, vocab)`` log-probs and the next state."""
        ...

    def step_top_k(self, tokens: np.ndarray, state: Any, k: int) -> tuple[Candidates, Any]:
        """``(rows,)`` tokens -> each row's ``k`` best next tokens and the next state."""
        ...

    def reorder(self, state: Any, index: np.ndarray) -> Any:
        """The rows ``index`` (axis 0) of ``state``: selected, repeated or dropped."""
        ...


@dataclass
class Hypothesis:
    """One output sequence (eos not included) and its normalised score."""

    tokens: list[int]
    score: float
    finish_reason: FinishReason


@dataclass
class _Rows:
    """Inputs still decoding: original positions and per-input bookkeeping."""

    origin: np.ndarray  # (rows,) index into the caller's batch
    max_length: np.ndarray  # (rows,)
    finished: list[list[Hypothesis]] = field(default_factory=list)


@dataclass
class Candidates:
    """Each row's ``k`` best next tokens: log-probs ``values`` and token ``ids``, both
    ``(rows, k)``, best first."""

    values: np.ndarray
    ids: np.ndarray


def top_k(log_probs: np.ndarray, k: int) -> Candidates:
    """The ``k`` best of each row of ``(rows, vocab)`` log-probs, best first; among equal
    values the lower id first (as ``argmax`` and ONNX ``TopK``)."""
    k = min(k, log_probs.shape[1])
    if k == 1:
        ids = log_probs.argmax(axis=1)[:, None]
    else:
        part = np.argpartition(-log_probs, k - 1, axis=1)[:, :k]
        chosen = np.take_along_axis(log_probs, part, axis=1)
        kth = chosen.min(axis=1, keepdims=True)
        chosen_at_kth = (chosen == kth).sum(axis=1)
        for row in np.flatnonzero((log_probs == kth).sum(axis=1) > chosen_at_kth):
            # a tie across the k-th place: argpartition picked arbitrary ids among it
            part[row] = np.argsort(-log_probs[row], kind="stable")[:k]
        part = np.sort(part, axis=1)
        order = np.argsort(-np.take_along_axis(log_probs, part, axis=1), axis=1, kind="stable")
        ids = np.take_along_axis(part, order, axis=1)
    return Candidates(np.take_along_axis(log_probs, ids, axis=1), ids.astype(np.int64))


def next_candidates(decoder: Decoder, tokens: np.ndarray, state: Any,
                    histories: list[list[int]], steps: np.ndarray, *, k: int, eos_id: int,
                    options: DecodeOptions) -> tuple[Candidates, Any]:
    """One decoder call: each row's ``k`` best allowed next tokens and the next state;
    ``steps`` ``(rows,)`` counts the tokens each row has generated (for ``min_length``)."""
    if options.no_repeat_ngram_size:
        log_probs, state = decoder.step(tokens, state)
        log_probs = ban_tokens(log_probs, histories, steps, eos_id=eos_id, options=options)
        return top_k(log_probs, k), state
    early = np.asarray(steps) < options.min_length  # rows that may not end yet
    if not early.any():
        return decoder.step_top_k(tokens, state, k)
    found, state = decoder.step_top_k(tokens, state, k + 1)  # one spare for a banned eos
    values = np.where(early[:, None] & (found.ids == eos_id), NEG_INF, found.values)
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    return Candidates(np.take_along_axis(values, order, axis=1),
                      np.take_along_axis(found.ids, order, axis=1)), state


def normalise(score: float | np.ndarray, length: int, options: DecodeOptions) -> Any:
    """Apply the length penalty to a summed log-probability."""
    if options.length_penalty_form == "gnmt":
        return score / ((5.0 + length) / 6.0) ** options.length_penalty
    return score / float(length) ** options.length_penalty


def ban_tokens(log_probs: np.ndarray, histories: list[list[int]], step: int | np.ndarray, *,
               eos_id: int, options: DecodeOptions) -> np.ndarray:
    """Apply ``min_length`` and ``no_repeat_ngram_size`` to ``(rows, vocab)`` log-probs;
    ``step`` is the tokens generated so far, for all rows or per row ``(rows,)``."""
    if np.ndim(step):
        log_probs[np.asarray(step) < options.min_length, eos_id] = NEG_INF
    elif step < options.min_length:
        log_probs[:, eos_id] = NEG_INF
    size = options.no_repeat_ngram_size
    if size > 0 and np.max(step, initial=0) + 1 >= size:
        for row, history in enumerate(histories):
            prefix = tuple(history[len(history) - size + 1 :]) if size > 1 else ()
            for start in range(len(history) - size + 1):
                if tuple(history[start : start + size - 1]) == prefix:
                    log_probs[row, history[start + size - 1]] = NEG_INF
    return log_probs


def greedy_search(decoder: Decoder, state: Any, *, batch: int, start_id: int, eos_id: int,
                  max_length: np.ndarray, options: DecodeOptions) -> list[list[Hypothesis]]:
    """Argmax decoding; returns one hypothesis per input, in input order."""
    rows = _Rows(np.arange(batch), max_length.copy())
    tokens = np.full(batch, start_id, dtype=np.int64)
    histories: list[list[int]] = [[] for _ in range(batch)]
    sums = np.zeros(batch, dtype=np.float64)
    results: list[list[Hypothesis]] = [[] for _ in range(batch)]
    step = 0
    while len(rows.origin):
        best, state = next_candidates(decoder, tokens, state, histories,
                                      np.full(len(tokens), step), k=1, eos_id=eos_id,
                                      options=options)
        tokens = best.ids[:, 0]
        sums += best.values[:, 0]
        keep = []
        for row, token in enumerate(tokens.tolist()):
            at_limit = step + 1 >= rows.max_length[row]
            if token == eos_id or at_limit:
                reason: FinishReason = "eos" if token == eos_id else "length"
                out = histories[row] if token == eos_id else [*histories[row], token]
                score = float(normalise(sums[row], step + 1, options))
                results[rows.origin[row]] = [Hypothesis(out, score, reason)]
            else:
                histories[row].append(token)
                keep.append(row)
        step += 1
        if len(keep) < len(tokens) and keep:
            index = np.array(keep)
            state = decoder.reorder(state, index)
            tokens, sums = tokens[index], sums[index]
            histories = [histories[i] for i in keep]
            rows = _Rows(rows.origin[index], rows.max_length[index])
        elif not keep:
            break
    return results
