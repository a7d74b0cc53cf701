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
- ``banned_ids``: tokens never generated (``generate``'s single-token ``bad_words_ids``).
- ``prefixes`` (per input key, CTranslate2's ``target_prefix``; ``generate``'s
  ``forced_bos_token_id`` is a prefix of one token): an input's first generated tokens are
  forced, each with log-probability 0; they count towards its length but are not part of its
  output tokens.
- ``forced_eos`` (``generate``'s ``forced_eos_token_id``): a row's last allowed token is eos,
  with log-probability 0, in place of the token it would have chosen; the output is one
  content token shorter than a plain cap, and its finish reason is ``"length"``.

"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from inference.options import DecodeOptions

NEG_INF = -np.inf
FinishReason = Literal["eos", "length"]
Prefixes = dict[int, list[int]]  # per input key: the tokens forced as its first ones


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
                    options: DecodeOptions, max_length: np.ndarray | None = None,
                    forced: np.ndarray | None = None) -> tuple[Candidates, Any]:
    """One decoder call: each row's ``k`` best allowed next tokens and the next state;
    ``steps`` ``(rows,)`` counts the tokens each row has generated (for ``min_length``),
    ``max_length`` ``(rows,)`` caps them (for ``forced_eos``), ``forced`` ``(rows,)`` is the
    token a row must take (a target prefix; -1 where free, see :func:`forced_tokens`)."""
    found, state = _allowed_candidates(decoder, tokens, state, histories, steps, k=k,
                                       eos_id=eos_id, options=options)
    if forced is not None:
        found = force_tokens(found, forced)
    if options.forced_eos and max_length is not None:
        last = np.asarray(steps) + 1 >= max_length
        found = force_tokens(found, np.where(last, eos_id, -1))
    return found, state


def forced_tokens(prefixes: Prefixes | None, origins: np.ndarray, steps: np.ndarray
                  ) -> np.ndarray | None:
    """Each row's forced next token ``(rows,)`` (-1 where free) from the prefixes of the
    rows' inputs ``origins`` ``(rows,)`` at their ``steps`` ``(rows,)``; None when no row is
    forced."""
    if not prefixes:
        return None
    forced = np.full(len(origins), -1, dtype=np.int64)
    for row, (origin, step) in enumerate(zip(origins.tolist(), steps.tolist(), strict=True)):
        prefix = prefixes.get(origin, ())
        if step < len(prefix):
            forced[row] = prefix[step]
    return forced if (forced >= 0).any() else None


def force_tokens(found: Candidates, forced: np.ndarray) -> Candidates:
    """Rows with ``forced`` ``(rows,)`` >= 0 get that token as their only candidate, with
    log-prob 0 (as ``generate``'s forced BOS/EOS logits processors)."""
    rows = forced >= 0
    if not rows.any():
        return found
    values = np.where(rows[:, None], NEG_INF, found.values)
    ids = found.ids.copy()
    values[rows, 0], ids[rows, 0] = 0.0, forced[rows]
    return Candidates(values, ids)


def _allowed_candidates(decoder: Decoder, tokens: np.ndarray, state: Any,
                        histories: list[list[int]], steps: np.ndarray, *, k: int, eos_id: int,
                        options: DecodeOptions) -> tuple[Candidates, Any]:
    """Each row's ``k`` best next tokens after ``ban_tokens``' rules, and the next state."""
    if options.no_repeat_ngram_size:
        log_probs, state = decoder.step(tokens, state)
        log_probs = ban_tokens(log_probs, histories, steps, eos_id=eos_id, options=options)
        return top_k(log_probs, k), state
    early = np.asarray(steps) < options.min_length  # rows that may not end yet
    if not early.any() and not options.banned_ids:
        return decoder.step_top_k(tokens, state, k)
    spare = 1 + len(options.banned_ids)  # enough for an eos and every banned id to drop out
    found, state = decoder.step_top_k(tokens, state, k + spare)
    banned = (early[:, None] & (found.ids == eos_id)) | np.isin(found.ids, options.banned_ids)
    values = np.where(banned, NEG_INF, found.values)
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
    if options.banned_ids:
        log_probs[:, list(options.banned_ids)] = NEG_INF
    size = options.no_repeat_ngram_size
    if size > 0 and np.max(step, initial=0) + 1 >= size:
        for row, history in enumerate(histories):
            prefix = tuple(history[len(history) - size + 1 :]) if size > 1 else ()
            for start in range(len(history) - size + 1):
                if tuple(history[start : start + size - 1]) == prefix:
                    log_probs[row, history[start + size - 1]] = NEG_INF
    return log_probs


def finish_reason(token: int, eos_id: int, *, at_limit: bool, options: DecodeOptions
                  ) -> FinishReason:
    """``"eos"`` for a sequence the model ended, ``"length"`` for one the cap ended (with
    ``forced_eos`` its eos at the cap is the forced one)."""
    return "eos" if token == eos_id and not (at_limit and options.forced_eos) else "length"


def greedy_search(decoder: Decoder, state: Any, *, batch: int, start_id: int, eos_id: int,
                  max_length: np.ndarray, options: DecodeOptions,
                  prefixes: Prefixes | None = None) -> list[list[Hypothesis]]:
    """Argmax decoding; returns one hypothesis per input, in input order; ``prefixes``: the
    forced first tokens of inputs (by batch index)."""
    rows = _Rows(np.arange(batch), max_length.copy())
    tokens = np.full(batch, start_id, dtype=np.int64)
    histories: list[list[int]] = [[] for _ in range(batch)]
    sums = np.zeros(batch, dtype=np.float64)
    results: list[list[Hypothesis]] = [[] for _ in range(batch)]
    step = 0
    while len(rows.origin):
        steps = np.full(len(tokens), step)
        best, state = next_candidates(decoder, tokens, state, histories, steps, k=1,
                                      eos_id=eos_id, options=options, max_length=rows.max_length,
                                      forced=forced_tokens(prefixes, rows.origin, steps))
        tokens = best.ids[:, 0]
        sums += best.values[:, 0]
        keep = []
        for row, token in enumerate(tokens.tolist()):
            at_limit = step + 1 >= rows.max_length[row]
            if token == eos_id or at_limit:
                reason = finish_reason(token, eos_id, at_limit=at_limit, options=options)
                out = histories[row] if token == eos_id else [*histories[row], token]
                score = float(normalise(sums[row], step + 1, options))
                skip = len((prefixes or {}).get(int(rows.origin[row]), ()))
                results[rows.origin[row]] = [Hypothesis(out[skip:], score, reason)]
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
