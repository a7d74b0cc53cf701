"""``corpus_scores`` against values worked out by hand from the BLEU and ROUGE-L definitions."""

from __future__ import annotations

import math

import pytest

from training.metrics import corpus_scores

REF = "the cat sat on a mat"


def bleu(precisions: list[float], brevity: float = 1.0) -> float:
    """Corpus BLEU: geometric mean of the 1- to 4-gram precisions times the brevity penalty."""
    return round(100 * brevity * math.prod(precisions) ** (1 / len(precisions)), 2)


@pytest.mark.parametrize(("hypotheses", "references", "expected"), [
    # "the" is clipped to the reference's one: 5/6 unigrams, 3/5 bigrams, 2/4, 1/3
    (["the cat sat on the mat"], [[REF]], bleu([5 / 6, 3 / 5, 2 / 4, 1 / 3])),
    # corpus statistics are summed over sentences, not averaged: 9/10, 6/8, 4/6, 2/4
    (["the cat sat on the mat", "a b c d"], [[REF, "a b c d"]],
     bleu([9 / 10, 6 / 8, 4 / 6, 2 / 4])),
    # every n-gram matches, but 4 words against 6: brevity penalty exp(1 - 6/4)
    (["the cat sat on"], [["the cat sat on the mat"]], bleu([1, 1, 1, 1], math.exp(1 - 6 / 4))),
    # the second reference stream is matched exactly
    (["a b c d e"], [["x y z"], ["a b c d e"]], 100.0),
])
def test_bleu_known_values(hypotheses: list[str], references: list[list[str]],
                           expected: float) -> None:
    scores = corpus_scores(hypotheses, references)
    assert scores["bleu"] == pytest.approx(expected, abs=0.01)
    assert scores["bleu_signature"].startswith(f"nrefs:{len(references)}|")
    assert scores["sentences"] == len(hypotheses) and scores["references"] == len(references)


def test_rouge_l_is_the_mean_of_the_best_reference_lcs_f1() -> None:
    # sentence 1: LCS "the cat sat on mat" = 5 of 6 words each side, F1 5/6, best of two refs;
    # sentence 2: LCS "b c" = 2 of 3 hypothesis and 2 of 4 reference words, F1 4/7
    scores = corpus_scores(["the cat sat on the mat", "x b c"],
                           [[REF, "a b c d"], ["dog", "z"]])
    assert scores["rouge_l"] == pytest.approx(round(100 * (5 / 6 + 4 / 7) / 2, 2), abs=0.01)


def test_identical_output_scores_100_and_unrelated_output_near_0() -> None:
    refs = ["le chat mange du poisson", "le grand chien voit le chat rouge"]
    perfect = corpus_scores(refs, [refs])
    assert (perfect["bleu"], perfect["chrf"], perfect["rouge_l"]) == (100.0, 100.0, 100.0)
    unrelated = corpus_scores(["xyz qwv", "pppp kkkk jjjj"], [refs])
    assert unrelated["bleu"] < 1 and unrelated["chrf"] < 5 and unrelated["rouge_l"] == 0
