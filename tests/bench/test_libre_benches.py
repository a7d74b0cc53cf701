"""The detection and cache/limiter benchmarks' pieces: the test verses they read, the request
mix with repeats, the limiter timing, and their argument checks."""

from __future__ import annotations

import pytest

from bench import cache_and_limits, language_detection


def test_request_mix_repeats_about_the_asked_share() -> None:
    verses = [f"verse {i}" for i in range(1000)]
    mix = cache_and_limits.request_mix(verses, 1000, 0.3)
    repeats = len(mix) - len(set(mix))
    assert 250 < repeats < 350
    assert mix == cache_and_limits.request_mix(verses, 1000, 0.3)  # fixed seed
    assert cache_and_limits.request_mix(verses, 10, 0.0) == verses[:10]


def test_limiter_timing_never_hits_the_limits() -> None:
    assert 0 < cache_and_limits.limiter_micros(200, keyed=True) < 10_000


def test_detection_verses_are_distinct_cleaned_verses_of_the_language() -> None:
    verses = language_detection.test_verses("fr", 30)
    assert len(verses) == 30 and len(set(verses)) == 30
    assert all(verse == verse.strip() and "  " not in verse for verse in verses)
    english = language_detection.test_verses("en", 30)
    assert not set(english) & set(verses)


def test_lingua_candidate_identifies_within_the_asked_languages() -> None:
    candidate = language_detection.lingua_candidate(["en", "fr"])
    assert candidate.known == ["en", "fr"]
    assert candidate.identify("Les fils de Japhet sortirent dans le pays.") == "fr"


@pytest.mark.parametrize("argv", [["--languages", "xx"], ["--per-language", "0"],
                                  ["--libraries", "nope", "--per-language", "1",
                                   "--languages", "en"]])
def test_detection_bench_refuses_bad_arguments(argv: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert language_detection.main(argv) == 2
    assert capsys.readouterr().err.startswith("error:")
