"""Segmentation: golden sentences in English, French and CJK, and every byte outside them
kept (``inference/text.py``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.text import Segmented, segment

# (language, text, its sentences in order); everything else in the text is kept as it is.
GOLDEN = [
    ("en", "Mr. Smith went to Washington. He met Dr. Jones.\n\nNew paragraph here.",
     ["Mr. Smith went to Washington.", "He met Dr. Jones.", "New paragraph here."]),
    ("en", "Mr. and Mrs. Smith arrived at 5 p.m. yesterday. They left.",
     ["Mr. and Mrs. Smith arrived at 5 p.m. yesterday.", "They left."]),
    ("en", "See e.g. the docs, i.e. the manual, etc. for more. Then go.",
     ["See e.g. the docs, i.e. the manual, etc. for more.", "Then go."]),
    ("en", "J. K. Rowling wrote it. The U.S.A. is big.",
     ["J. K. Rowling wrote it.", "The U.S.A. is big."]),
    ("en", "It costs $3.50 per item. Pi is 3.14159. Version 2.0.1 shipped.",
     ["It costs $3.50 per item.", "Pi is 3.14159.", "Version 2.0.1 shipped."]),
    ("en", "Wait... what happened? I don't know... Really!",
     ["Wait... what happened?", "I don't know...", "Really!"]),
    ("en", 'He said "Stop. Now." Then he left. She said, “It’s late.” He agreed.',
     ['He said "Stop. Now."', "Then he left.", "She said, “It’s late.”", "He agreed."]),
    ("en", "  Leading and trailing.  Two spaces between.   Three here.\n",
     ["Leading and trailing.", "Two spaces between.", "Three here."]),
    ("en", "Line one\nLine two\r\n\r\nLine three.", ["Line one", "Line two", "Line three."]),
    ("en", "\t Indented.\n\n\n   Another one!  \n", ["Indented.", "Another one!"]),
    ("en", "Chapter 1.\n\n1. First point.\n2. Second point.",
     ["Chapter 1.", "First point.", "Second point."]),
    ("fr", "M. Dupont est arrivé. Il a vu Mme Martin.\n\nNouveau paragraphe.",
     ["M. Dupont est arrivé.", "Il a vu Mme Martin.", "Nouveau paragraphe."]),
    ("fr", "Le Dr Roux est là. M. Smith aussi.", ["Le Dr Roux est là.", "M. Smith aussi."]),
    ("fr", "Mme Martin, M. Dupont, etc. sont venus. Ils sont partis.",
     ["Mme Martin, M. Dupont, etc. sont venus.", "Ils sont partis."]),
    ("fr", "Voir p. ex. la page 3. Ensuite, lisez.", ["Voir p. ex. la page 3.", "Ensuite, lisez."]),
    ("fr", "Il fait 3,5 degrés. Le prix est de 1.234,50 €. C'est cher.",
     ["Il fait 3,5 degrés.", "Le prix est de 1.234,50 €.", "C'est cher."]),
    ("fr", "Quoi ?Vraiment ?Oui.", ["Quoi ?", "Vraiment ?", "Oui."]),
    ("fr", "Pourquoi?Parce que.", ["Pourquoi?", "Parce que."]),
    ("fr", "« Bonjour. » a-t-il dit. Puis il est parti.",
     ["« Bonjour. » a-t-il dit.", "Puis il est parti."]),
    ("fr", "C'est fini... Ou pas ?\n", ["C'est fini...", "Ou pas ?"]),
    ("zh", "你好。今天天气很好！你呢？", ["你好。", "今天天气很好！", "你呢？"]),
    ("ja", "こんにちは。元気ですか？\nはい、元気です！",
     ["こんにちは。", "元気ですか？", "はい、元気です！"]),
]
IDS = [text[:24] for _, text, _ in GOLDEN]


def replace_in_order(text: str, sentences: Sequence[str], translate: Callable[[str], str]
                     ) -> str:
    """``text`` with each of ``sentences`` (found left to right) replaced by its
    translation, every other character copied: what a translation must look like."""
    out, position = [], 0
    for sentence in sentences:
        start = text.index(sentence, position)
        out += [text[position:start], translate(sentence)]
        position = start + len(sentence)
    return "".join([*out, text[position:]])


@pytest.mark.parametrize(("language", "text", "sentences"), GOLDEN, ids=IDS)
def test_golden_sentences_and_everything_else_kept(language: str, text: str,
                                                   sentences: list[str]) -> None:
    cut = segment(text, language=language)
    assert cut.sources == sentences
    assert "".join(cut.spans) == cut.text == text
    kept = [span for index, span in enumerate(cut.spans) if index not in cut.sentences]
    assert not any(char.isalpha() for span in kept for char in span)
    assert cut.join([f"<{s}>" for s in sentences]) == replace_in_order(
        text, sentences, lambda s: f"<{s}>")


@pytest.mark.parametrize(("language", "text", "sentences"), GOLDEN, ids=IDS)
def test_stream_edges_concatenate_to_the_join(language: str, text: str,
                                              sentences: list[str]) -> None:
    cut = segment(text, language=language)
    translations = [s.upper() for s in sentences]
    pieces = []
    for number, translation in enumerate(translations):
        before, after = cut.edges(number)
        assert not before.strip() or number == 0
        pieces.append(before + translation + after)
    assert "".join(pieces) == cut.join(translations)


@pytest.mark.parametrize(("language", "text", "sentences"), GOLDEN, ids=IDS)
def test_a_line_and_a_sentence_are_cut_alike_alone_and_in_a_text(
        language: str, text: str, sentences: list[str]) -> None:
    lines = [segment(line, language=language).sources for line in text.splitlines()]
    assert [s for line in lines for s in line] == sentences
    for sentence in sentences:
        assert segment(sentence, language=language).sources == [sentence]


@pytest.mark.parametrize("text", ["", " ", "\n\n", " \t\r\n ", "2024\n---\n", "3.14 ?!"])
def test_a_text_without_sentences_is_kept_whole(text: str) -> None:
    cut = segment(text, language="en")
    assert cut.sentences == () and cut.text == text and cut.join([]) == text


def test_join_wants_one_translation_per_sentence() -> None:
    with pytest.raises(ValueError, match="1 translations for 2 sentences"):
        segment("One. Two.", language="en").join(["x"])


def test_separators_hold_no_letters_and_sentences_no_edge_whitespace() -> None:
    cut = segment(" One.\u2028Two.\x85Three.\u2029Four. ", language="en")
    assert cut == Segmented((" ", "One.", "\u2028", "Two.", "\x85", "Three.", "\u2029", "Four.",
                             " "), (1, 3, 5, 7))


WORDS = st.sampled_from(["Mr.", "word", "3.5", "etc.", "«", "»", "?", "!", "...", "é", "你好。",
                         "M.", "a", "1.", "x?y"])
SPACES = st.sampled_from([" ", "  ", "\n", "\n\n", "\r\n", "\t", " \n ", "\u00a0"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(WORDS, SPACES), max_size=20), SPACES, st.sampled_from(["en", "fr"]))
def test_any_text_is_cut_into_spans_that_join_back(parts: list[tuple[str, str]], lead: str,
                                                   language: str) -> None:
    text = lead + "".join(word + space for word, space in parts)
    cut = segment(text, language=language)
    assert cut.text == text and cut.join(cut.sources) == text
    for index in cut.sentences:
        span = cut.spans[index]
        assert span == span.strip() and "\n" not in span and "\r" not in span
