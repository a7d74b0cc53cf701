"""Cleaning of the measured corpus problems (shared/data/CORPUS.md)."""

from __future__ import annotations

import pytest

from training.data.cleaning import clean_verse, is_placeholder, psalm_titles_agree


def clean(text: str, version: str = "k", lang: str = "en", book: int = 1, chapter: int = 1,
          verse: int = 2) -> str:
    return clean_verse(text, version=version, lang=lang, book=book, chapter=chapter, verse=verse)


@pytest.mark.parametrize("text", ["-", "...", "[]", "***", "(*)", "(3:4) -",
                                  "Verszeile ohne Text", "dummy verses inserted by amos"])
def test_placeholders_are_dropped(text: str) -> None:
    assert is_placeholder(text)
    assert clean(text) == ""


def test_versification_markers_are_removed_anywhere() -> None:
    text = "(3:1) Psaume de David. (3:2) O Éternel, que mes ennemis sont nombreux!"
    assert clean(text, "l", "fr") == "Psaume de David. O Éternel, que mes ennemis sont nombreux!"


def test_darby_signs_brackets_apostrophes_and_punctuation_spacing() -> None:
    text = "ne sont point #Dieu, [dieux] nouveaux ; l’Éternel dit : Où es-tu ?"
    assert clean(text, "5", "fr") == "ne sont point Dieu, dieux nouveaux; l'Éternel dit: Où es-tu?"


def test_web_psalm_heading_glued_to_last_verse_is_stripped() -> None:
    text = "Blessed be Yahweh. Amen and amen. BOOK II Psalm 42 For the Chief Musician."
    cleaned = clean(text, "4", "en", book=19, chapter=41, verse=13)
    assert cleaned == "Blessed be Yahweh. Amen and amen."


def test_psalm_119_letter_headings_only_at_stanza_starts() -> None:
    assert clean("ALEPH. Blessed are the undefiled.", book=19, chapter=119, verse=1) == (
        "Blessed are the undefiled.")
    assert clean("He Teach me, O LORD.", "2", book=19, chapter=119, verse=33) == "Teach me, O LORD."
    assert clean("He said so.", book=19, chapter=119, verse=34) == "He said so."


def test_encoding_accidents_and_control_characters() -> None:
    assert clean("\u00adOh Dios!", "v", "es") == "¡Oh Dios!"
    assert clean("dell \x91uomo\x85", "1", "it") == "dell'uomo…"
    assert clean("a\x07b  \t c") == "a b c"


def test_nfc_not_nfkc() -> None:
    decomposed = "E\u0301ternel ﬁn"
    assert clean(decomposed, "l", "fr") == "Éternel ﬁn"


def test_psalm_titles_must_agree() -> None:
    assert psalm_titles_agree("k", "5")
    assert psalm_titles_agree("2", "l")
    assert not psalm_titles_agree("k", "l")
