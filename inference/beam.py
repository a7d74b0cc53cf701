"""Batched beam search (batch x beam) in pure numpy; semantics in ``search``'s docstring."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.options import DecodeOptions
from inference.search import (
    Candidates,
    Decoder,
    FinishReason,
    Hypothesis,
    Prefixes,
    finish_reason,
    forced_tokens,
    next_candidates,
    normalise,
)

DEAD = -1.0e9  # score of the initial copies of each beam (as generate does)
Hypotheses = dict[int, list[Hypothesis]]  # per input key; finished so far, or final results


@dataclass
class Beams:
    """Running beams of the inputs still decoding; ``K`` rows per input."""

    origin: np.ndarray  # (inputs,) caller's batch index (or job key)
    max_length: np.ndarray  # (inputs,)
    scores: np.ndarray  # (inputs, K) summed log-probs
    histories: list[list[int]]  # (inputs * K) generated tokens
    tokens: np.ndarray  # (inputs * K,) last tokens
    steps: np.ndarray  # (inputs,) tokens generated so far

    def rows_of(self, inputs: np.ndarray) -> np.ndarray:
        """State rows ``(len(inputs) * K,)`` of the given input positions."""
        width = self.scores.shape[1]
        return (inputs[:, None] * width + np.arange(width)).reshape(-1)

    def select(self, inputs: np.ndarray) -> Beams:
        """The beams of the given input positions, in that order."""
        rows = self.rows_of(inputs)
        return Beams(self.origin[inputs], self.max_length[inputs], self.scores[inputs],
                      [self.histories[r] for r in rows.tolist()], self.tokens[rows],
                      self.steps[inputs])


def start_beams(origin: np.ndarray, max_length: np.ndarray, width: int, start_id: int
                ) -> Beams:
    """Fresh beams: one live copy per input (the others at ``DEAD``), nothing generated."""
    count = len(origin)
    scores = np.full((count, width), DEAD)
    scores[:, 0] = 0.0
    return Beams(origin, max_length.astype(np.int64), scores, [[] for _ in range(count * width)],
                  np.full(count * width, start_id, np.int64), np.zeros(count, np.int64))


def concat_beams(first: Beams, second: Beams) -> Beams:
    """Beams of ``first``'s inputs followed by ``second``'s."""
    return Beams(np.concatenate([first.origin, second.origin]),
                  np.concatenate([first.max_length, second.max_length]),
                  np.concatenate([first.scores, second.scores]),
                  first.histories + second.histories,
                  np.concatenate([first.tokens, second.tokens]),
                  np.concatenate([first.steps, second.steps]))


def _top_candidates(candidates: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` best of each row of ``(inputs, K * k)``, best first."""
    count = min(count, candidates.shape[1])
    part = np.argpartition(-candidates, count - 1, axis=1)[:, :count]
    values = np.take_along_axis(candidates, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _finish(finished: list[Hypothesis], beam: int, history: list[int], token: int, eos_id: int,
            score: float, reason: FinishReason, skip: int) -> None:
    """Add a hypothesis (its first ``skip`` tokens, a forced prefix, left out)."""
    tokens = list(history) if token == eos_id else [*history, token]
    finished.append(Hypothesis(tokens[skip:], score, reason))
    finished.sort(key=lambda h: -h.score)
    del finished[beam:]


def _is_done(finished: list[Hypothesis], best_running: float | None, length: int,
             options: DecodeOptions) -> bool:
    """No running beam can still beat the worst of ``beam`` finished hypotheses."""
    if len(finished) < options.beam_size:
        return False
    if options.early_stopping or best_running is None:
        return True
    return bool(normalise(best_running, length, options) <= finished[-1].score)


def beam_search(decoder: Decoder, state: Any, *, batch: int, start_id: int, eos_id: int,
                max_length: np.ndarray, options: DecodeOptions,
                prefixes: Prefixes | None = None) -> list[list[Hypothesis]]:
    """Up to ``num_hypotheses`` best hypotheses per input, best first, in input order;
    ``prefixes``: the forced first tokens of inputs (by batch index).

    The first step runs one row per input (its beams are all the same until then) and the
    state grows to ``beam`` rows per input after it."""
    width = options.beam_size
    beams = start_beams(np.arange(batch), max_length, width, start_id)
    finished: Hypotheses = {i: [] for i in range(batch)}
    results: Hypotheses = {}
    found, state = next_candidates(decoder, beams.tokens[::width], state,
                                   beams.histories[::width], np.zeros(batch, np.int64),
                                   k=2 * width, eos_id=eos_id, options=options,
                                   max_length=beams.max_length,
                                   forced=forced_tokens(prefixes, beams.origin, beams.steps))
    copies = Candidates(np.repeat(found.values, width, axis=0),
                        np.repeat(found.ids, width, axis=0))  # the dead copies never win
    beams, index = select_step(copies, beams, finished, results, eos_id=eos_id,
                               options=options, prefixes=prefixes)
    if len(beams.origin):
        state = decoder.reorder(state, index // width)
    while len(beams.origin):
        beams, state = beam_step(decoder, state, beams, finished, results, eos_id=eos_id,
                                 options=options, prefixes=prefixes)
    return [results[i] for i in range(batch)]


def beam_step(decoder: Decoder, state: Any, beams: Beams, finished: Hypotheses,
              results: Hypotheses, *, eos_id: int, options: DecodeOptions,
              prefixes: Prefixes | None = None) -> tuple[Beams, Any]:
    """One decoder call for every running beam: finished inputs move to ``results`` (keyed by
    ``beams.origin``) and leave the batch; returns the remaining beams and their state."""
    width = options.beam_size
    steps = np.repeat(beams.steps, width)
    found, state = next_candidates(
        decoder, beams.tokens, state, beams.histories, steps, k=2 * width, eos_id=eos_id,
        options=options, max_length=np.repeat(beams.max_length, width),
        forced=forced_tokens(prefixes, np.repeat(beams.origin, width), steps))
    beams, index = select_step(found, beams, finished, results, eos_id=eos_id, options=options,
                               prefixes=prefixes)
    if len(beams.origin):
        state = decoder.reorder(state, index)
    return beams, state


def select_step(found: Candidates, beams: Beams, finished: Hypotheses,
                results: Hypotheses, *, eos_id: int, options: DecodeOptions,
                prefixes: Prefixes | None = None) -> tuple[Beams, np.ndarray]:
    """From one step's candidates ``(inputs * K, k)`` (``k >= 2 * K`` allowed tokens of each
    row, or all of them): the next beams, and the state rows ``(next inputs * K,)`` they
    continue (grouped by input, in the order of ``beams``)."""
    candidates = (beams.scores.reshape(-1, 1) + found.values).reshape(len(beams.origin), -1)
    top = _top_candidates(candidates, 2 * options.beam_size)
    return _advance(beams, candidates, top, found.ids, finished, results, eos_id=eos_id,
                    options=options, prefixes=prefixes or {})


def _advance(beams: Beams, candidates: np.ndarray, top: np.ndarray, ids: np.ndarray,
             finished: Hypotheses, results: Hypotheses, *, eos_id: int,
             options: DecodeOptions, prefixes: Prefixes) -> tuple[Beams, np.ndarray]:
    """Finish, select and drop: the next running beams and the state rows they continue."""
    width, per_row = options.beam_size, ids.shape[1]
    keep_inputs, rows, tokens, scores, histories = [], [], [], [], []
    lengths = beams.steps + 1
    for i, origin in enumerate(beams.origin.tolist()):
        length = int(lengths[i])
        at_limit = length >= beams.max_length[i]
        running: list[tuple[int, int, float]] = []
        for rank, flat in enumerate(top[i].tolist()):
            score = float(candidates[i, flat])
            row = i * width + flat // per_row
            token = int(ids[row, flat % per_row])
            if token == eos_id or at_limit:
                if rank < width:
                    _finish(finished[origin], width, beams.histories[row], token, eos_id,
                            float(normalise(score, length, options)),
                            finish_reason(token, eos_id, at_limit=at_limit, options=options),
                            len(prefixes.get(origin, ())))
            elif len(running) < width:
                running.append((row, token, score))
        best = running[0][2] if running else None
        if at_limit or _is_done(finished[origin], best, length, options):
            results[origin] = finished.pop(origin)[: options.num_hypotheses]
            continue
        keep_inputs.append(i)
        for row, token, score in running:
            rows.append(row)
            tokens.append(token)
            scores.append(score)
            histories.append([*beams.histories[row], token])
    keep = np.array(keep_inputs, dtype=np.int64)
    next_beams = Beams(beams.origin[keep], beams.max_length[keep],
                        np.array(scores, dtype=np.float64).reshape(len(keep), width),
                        histories, np.array(tokens, dtype=np.int64), lengths[keep])
    return next_beams, np.array(rows, dtype=np.int64)
