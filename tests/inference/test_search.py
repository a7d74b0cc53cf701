"""Golden search tests: scripted per-step probability tables, exact hypotheses and scores."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from inference.beam import beam_search
from inference.options import DecodeOptions
from inference.search import Candidates, greedy_search, top_k

START, EOS, A, B, C = range(5)
TABLE: dict[tuple[int, ...], dict[int, float]] = {
    (): {EOS: 0.1, A: 0.5, B: 0.38, C: 0.02},
    (A,): {EOS: 0.9, A: 0.05, B: 0.03, C: 0.02},
    (B,): {EOS: 0.05, A: 0.03, B: 0.02, C: 0.9},
    (B, C): {EOS: 0.97, A: 0.01, B: 0.01, C: 0.01},
}
DEFAULT = {EOS: 0.97, A: 0.01, B: 0.01, C: 0.01}


def log_p(history: tuple[int, ...], token: int) -> float:
    return math.log(TABLE.get(history, DEFAULT)[token])


class Scripted:
    """A decoder whose next-token distribution depends only on the tokens so far.

    State: one history tuple per row (object array, batch on axis 0)."""

    def __init__(self) -> None:
        self.rows_seen: list[int] = []

    def step(self, tokens: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        self.rows_seen.append(len(tokens))
        new = np.empty(len(tokens), dtype=object)
        out = np.full((len(tokens), 5), -np.inf, dtype=np.float32)
        for row, (token, history) in enumerate(zip(tokens.tolist(), state, strict=True)):
            new[row] = history if token == START else (*history, token)
            for tok, prob in TABLE.get(new[row], DEFAULT).items():
                out[row, tok] = math.log(prob)
        return out, new

    def step_top_k(self, tokens: np.ndarray, state: Any, k: int) -> tuple[Candidates, Any]:
        log_probs, state = self.step(tokens, state)
        return top_k(log_probs, k), state

    def reorder(self, state: Any, index: np.ndarray) -> Any:
        return state[index]


def start_state(batch: int) -> np.ndarray:
    state = np.empty(batch, dtype=object)
    for row in range(batch):
        state[row] = ()
    return state


def run(search: Any, batch: int = 1, max_length: int = 10, decoder: Scripted | None = None,
        **options: Any) -> Any:
    decoder = decoder or Scripted()
    results = search(decoder, start_state(batch), batch=batch, start_id=START, eos_id=EOS,
                     max_length=np.full(batch, max_length), options=DecodeOptions(**options))
    return results, decoder


def test_greedy_takes_the_argmax_path() -> None:
    (best,), _ = run(greedy_search)
    assert best[0].tokens == [A] and best[0].finish_reason == "eos"
    assert best[0].score == pytest.approx((log_p((), A) + log_p((A,), EOS)) / 2)


def test_beam_without_length_penalty_prefers_the_short_likely_path() -> None:
    (hyps,), _ = run(beam_search, beam_size=2, num_hypotheses=2, length_penalty=0.0)
    assert [h.tokens for h in hyps] == [[A], [B, C]]
    assert hyps[0].score == pytest.approx(log_p((), A) + log_p((A,), EOS))
    assert hyps[1].score == pytest.approx(log_p((), B) + log_p((B,), C) + log_p((B, C), EOS))


def test_length_penalty_changes_the_winner() -> None:
    (hyps,), _ = run(beam_search, beam_size=2, num_hypotheses=2, length_penalty=1.0)
    assert [h.tokens for h in hyps] == [[B, C], [A]]
    assert hyps[0].score == pytest.approx(
        (log_p((), B) + log_p((B,), C) + log_p((B, C), EOS)) / 3)


def test_gnmt_length_penalty_form() -> None:
    (hyps,), _ = run(beam_search, beam_size=2, length_penalty=1.0, length_penalty_form="gnmt")
    total = log_p((), A) + log_p((A,), EOS)  # -0.80 / (7/6) beats -1.02 / (8/6)
    assert hyps[0].tokens == [A] and hyps[0].score == pytest.approx(total / ((5 + 2) / 6))


def test_min_length_and_no_repeat_ngram() -> None:
    (best,), _ = run(greedy_search, min_length=2, no_repeat_ngram_size=1)
    assert best[0].tokens == [A, B]
    (best,), _ = run(greedy_search, min_length=2)
    assert best[0].tokens == [A, A]


def test_max_length_stops_with_reason_length() -> None:
    (best,), _ = run(greedy_search, max_length=1)
    assert best[0].tokens == [A] and best[0].finish_reason == "length"
    (hyps,), _ = run(beam_search, max_length=1, beam_size=2, num_hypotheses=2)
    assert {h.finish_reason for h in hyps} == {"length"}
    assert [h.tokens for h in hyps] == [[A], [B]]


def test_finished_rows_leave_the_batch() -> None:
    _, decoder = run(beam_search, batch=3, beam_size=2, length_penalty=0.0)
    # step 1 runs one row per input (its beams are identical), then 2 beams per input until
    # all rows end together at step 3
    assert decoder.rows_seen == [3, 6, 6]
    decoder = Scripted()
    state = start_state(2)
    greedy_search(decoder, state, batch=2, start_id=START, eos_id=EOS,
                  max_length=np.array([1, 5]), options=DecodeOptions(min_length=3))
    assert decoder.rows_seen == [2, 1, 1, 1]  # row 0 hits its limit after one step
