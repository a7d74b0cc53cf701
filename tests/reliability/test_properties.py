"""Properties (hypothesis, bounded and derandomized): search and batching invariants over
random scripted probability tables and the real tiny bundle."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference.beam import beam_search
from inference.options import DecodeOptions
from inference.search import Candidates, Hypothesis, greedy_search, top_k
from inference.tokenizer import load_tokenizer
from inference.translator import Translator

START, EOS, VOCAB = 0, 1, 5
BOUNDED = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck))


class RandomTable:
    """A decoder whose next-token log-probabilities are a fixed random function of
    ``(seed, row, history)``; state: one ``(row, history)`` pair per row."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def log_probs(self, row: int, history: tuple[int, ...]) -> np.ndarray:
        """A random distribution over ``VOCAB`` tokens (start never produced)."""
        rng = np.random.default_rng([self.seed, row, *history])
        logits = rng.normal(0.0, 2.0, VOCAB)
        logits[START] = -np.inf
        return (logits - np.logaddexp.reduce(logits[1:])).astype(np.float32)

    def step(self, tokens: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """One step: append each row's token, then its next distribution."""
        new = np.empty(len(tokens), dtype=object)
        out = np.empty((len(tokens), VOCAB), dtype=np.float32)
        for index, (token, (row, history)) in enumerate(zip(tokens.tolist(), state,
                                                            strict=True)):
            new[index] = (row, history if token == START else (*history, token))
            out[index] = self.log_probs(*new[index])
        return out, new

    def step_top_k(self, tokens: np.ndarray, state: Any, k: int) -> tuple[Candidates, Any]:
        log_probs, state = self.step(tokens, state)
        return top_k(log_probs, k), state

    def reorder(self, state: Any, index: np.ndarray) -> Any:
        """Rows follow ``index``."""
        return state[index]


def search(kind: Any, seed: int, batch: int, max_length: int, **options: Any
           ) -> list[list[Hypothesis]]:
    """Run ``kind`` (greedy or beam) over a fresh random table."""
    state = np.empty(batch, dtype=object)
    for row in range(batch):
        state[row] = (row, ())
    result: list[list[Hypothesis]] = kind(
        RandomTable(seed), state, batch=batch, start_id=START, eos_id=EOS,
        max_length=np.full(batch, max_length), options=DecodeOptions(**options))
    return result


SEEDS = st.integers(0, 2**32 - 1)
BATCH = st.integers(1, 4)
LENGTH = st.integers(1, 8)


@BOUNDED
@given(seed=SEEDS, batch=BATCH, max_length=LENGTH)
def test_beam_of_one_is_greedy(seed: int, batch: int, max_length: int) -> None:
    """beam_search with beam 1 returns greedy's tokens and score (length_penalty 0)."""
    greedy = search(greedy_search, seed, batch, max_length, length_penalty=0.0)
    beam = search(beam_search, seed, batch, max_length, beam_size=1, length_penalty=0.0)
    for (g,), (b,) in zip(greedy, beam, strict=True):
        assert b.tokens == g.tokens
        assert b.score == pytest.approx(g.score, abs=1e-5)


@BOUNDED
@given(seed=SEEDS, batch=BATCH, max_length=LENGTH, beam=st.integers(2, 5))
def test_best_beam_never_scores_below_greedy(seed: int, batch: int, max_length: int,
                                             beam: int) -> None:
    """The best beam hypothesis scores at least greedy's (same scoring, length_penalty 0)."""
    greedy = search(greedy_search, seed, batch, max_length, length_penalty=0.0)
    beams = search(beam_search, seed, batch, max_length, beam_size=beam, length_penalty=0.0)
    for (g,), hyps in zip(greedy, beams, strict=True):
        assert hyps[0].score >= g.score - 1e-5, (hyps[0], g)


WORDS = ["the", "cat", "eats", "fish", "big", "dog", "sees", "red", "small", "."]


@pytest.fixture(scope="module")
def translator(trained_bundle: Path) -> Translator:
    """The real tiny bundle, small token budget so batches split."""
    return Translator.load(trained_bundle, threads=1, max_batch_tokens=24)


def test_results_in_input_order_for_any_batch(translator: Translator) -> None:
    """Any subset and order of sentences: each result equals its sentence's result alone."""
    sentences = [" ".join(WORDS[i:i + 1 + i % 5]) for i in range(len(WORDS))]
    alone = {s: translator.translate([s], beam_size=1)[0].text for s in sentences}

    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(order=st.lists(st.sampled_from(sentences), min_size=1, max_size=12))
    def check(order: list[str]) -> None:
        results = translator.translate(order, beam_size=1)
        assert [r.text for r in results] == [alone[s] for s in order]

    check()


@pytest.fixture(scope="module")
def tokenizer(trained_bundle: Path) -> Any:
    """The bundle's tokenizer, as the engine loads it."""
    return load_tokenizer(trained_bundle)


PRINTABLE = st.text(st.characters(categories=("L", "M", "N", "P", "S", "Zs")), max_size=60)


def test_detokenize_tokenize_preserves_printable_text(tokenizer: Any) -> None:
    """decode(encode(x)) == x for any NFC-normalised printable text (byte-level BPE)."""

    @BOUNDED
    @given(text=PRINTABLE.map(lambda text: unicodedata.normalize("NFC", text)))
    def check(text: str) -> None:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.batch_decode([ids], skip_special_tokens=True)[0] == text

    check()


HTML_BITS = st.sampled_from(["<p>", "</p>", "<b>", "</b>", "<br/>", "<!--", "-->", "<![",
                             "]]>", "<!DOCTYPE html>", "<script>", "</script>", "<code>",
                             '<div translate="no">', "</div>", "&amp;", "&nbsp;", "&#33;",
                             "&bogus;", "<", ">", "'", '"', "=", " ", "\n", "word", "été"])


@BOUNDED
@given(st.lists(HTML_BITS, max_size=40).map("".join))
def test_html_documents_render_back_or_are_refused(document: str) -> None:
    """Any string is cut into pieces that are the document, and rendering replaces exactly
    the text runs, each between a whitespace prefix and suffix of its own; or the string is
    refused with a MarkupError."""
    import html

    from service.api.markup import MarkupError, parse_html

    try:
        parsed = parse_html(document)
    except MarkupError:
        return
    assert "".join(parsed.pieces) == document
    rendered = parsed.render([f"\x00{index}\x00" for index in range(len(parsed.runs))])
    cursor = 0
    for index, piece in enumerate(parsed.pieces):
        if index not in parsed.runs:
            assert rendered.startswith(piece, cursor)
            cursor += len(piece)
            continue
        marker = f"\x00{parsed.runs.index(index)}\x00"
        at = rendered.index(marker, cursor)
        lead = rendered[cursor:at]
        rest = piece[len(lead):]
        trail = next(rest[cut:] for cut in range(len(rest) + 1)
                     if not html.unescape(rest[cut:]).split()
                     and rendered.startswith(rest[cut:], at + len(marker)))
        assert piece.startswith(lead) and not html.unescape(lead + trail).split()
        assert html.unescape(piece[len(lead): len(piece) - len(trail)]).split()
        cursor = at + len(marker) + len(trail)
    assert cursor == len(rendered)
