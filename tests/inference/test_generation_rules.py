"""``generate``'s forced eos at the length cap and banned tokens in the pure search, with the
scripted decoder of the golden search tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from inference.beam import beam_search
from inference.search import Candidates, greedy_search, top_k
from tests.inference.test_search import EOS, A, B, C, Scripted, log_p, run


class ScriptedTopK(Scripted):
    """The scripted decoder with an in-graph-like top-k (the path that never sees the full
    log-probs)."""

    def step_top_k(self, tokens: np.ndarray, state: Any, k: int) -> tuple[Candidates, Any]:
        log_probs, state = self.step(tokens, state)
        return top_k(log_probs, k), state


@pytest.mark.parametrize("decoder", [Scripted, ScriptedTopK])
def test_banned_ids_are_never_generated(decoder: type[Scripted]) -> None:
    (best,), _ = run(greedy_search, banned_ids=(A,))
    assert best[0].tokens == [B, C] and best[0].finish_reason == "eos"
    (found,), _ = run(greedy_search, decoder=decoder(), banned_ids=(A, C), min_length=2)
    assert found[0].tokens == [B, B]


def test_forced_eos_replaces_the_last_token_with_eos_at_log_prob_0() -> None:
    (plain,), _ = run(greedy_search, max_length=2, banned_ids=(A,))
    assert plain[0].tokens == [B, C] and plain[0].finish_reason == "length"
    (forced,), _ = run(greedy_search, max_length=2, banned_ids=(A,), forced_eos=True)
    assert forced[0].tokens == [B] and forced[0].finish_reason == "length"
    assert forced[0].score == pytest.approx(log_p((), B) / 2)
    (ended,), _ = run(greedy_search, max_length=3, forced_eos=True)  # A, eos: before the cap
    assert ended[0].tokens == [A] and ended[0].finish_reason == "eos"
    assert ended[0].score == pytest.approx((log_p((), A) + log_p((A,), EOS)) / 2)


@pytest.mark.parametrize("decoder", [Scripted, ScriptedTopK])
def test_beam_with_forced_eos_ends_every_beam_at_the_cap(decoder: type[Scripted]) -> None:
    (hyps,), _ = run(beam_search, decoder=decoder(), max_length=2, beam_size=2,
                     num_hypotheses=2, banned_ids=(A,), forced_eos=True)
    assert [h.tokens for h in hyps] == [[B], [C]]  # each running beam once, eos forced
    assert [h.score for h in hyps] == pytest.approx([log_p((), B) / 2, log_p((), C) / 2])
    assert {h.finish_reason for h in hyps} == {"length"}
