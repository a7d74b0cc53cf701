"""HTML in, HTML out: a document's text translated, everything else kept byte for byte.

For LibreTranslate's ``format: "html"``. :func:`parse_html` cuts a document into pieces with the
standard library's tolerant HTML parser: markup (tags with their attributes, comments,
declarations, processing instructions) and **text runs** (character data and character
references between two pieces of markup). A text run is translated when it holds a letter and is
not inside an element whose content is not prose (``script``, ``style``,
``code``, ``pre``, ``textarea``, ...) or that asks not to be translated (HTML's
``translate="no"``, or the ``notranslate`` class that translation tools honour). Translation
happens on the unescaped text with its runs of whitespace collapsed, cut into sentences as a
plain text is (``inference/text.py``); the result is escaped again
and put back between the run's own leading and trailing whitespace. Every other byte of the
document is copied unchanged, so a document with no text to translate comes back identical.

Text cut by inline tags (``Hello <b>world</b>.``) is translated run by run, as LibreTranslate
does: the tags cannot be placed inside a translated sentence without word alignments.
Attribute values (``alt``, ``title``) are not translated. An element not to translate is left
at its own end tag; one whose end tag is only implied (``<p translate="no">`` closed by the next
``<p>``) leaves the rest of the document untranslated, on the safe side.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser

from inference.translator import Translation
from service.api.assembly import combine

# Elements whose content is code or preformatted data, not prose.
VERBATIM = frozenset({"script", "style", "code", "pre", "textarea", "kbd", "samp", "var",
                      "template", "svg", "math"})
# Elements that have no content (a start tag that opens nothing).
VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                  "source", "track", "wbr"})
# A run's edges, kept around its translation: HTML's whitespace and no-break spaces, raw or as
# character references (at most 16 characters each, so the trailing edge is found in linear time).
EDGE = r"(?:[ \t\n\r\f\xa0]|&nbsp;|&#0{0,8}160;|&#[xX]0{0,8}[aA]0;)"
LEADING, LAST_EDGE = re.compile(EDGE + "*"), re.compile(EDGE + r"\Z")


@dataclass(frozen=True)
class Document:
    """A document cut into ``pieces`` (their concatenation is the document); ``runs`` are the
    indices of the pieces to translate, in document order."""

    pieces: tuple[str, ...]
    runs: tuple[int, ...]

    @property
    def sources(self) -> list[str]:
        """The text of each run to translate: unescaped, whitespace collapsed."""
        return [" ".join(html.unescape(self.pieces[index]).split()) for index in self.runs]

    def render(self, translations: Sequence[str]) -> str:
        """The document with run ``i`` replaced by ``translations[i]`` (escaped), each between
        its run's leading and trailing whitespace."""
        if len(translations) != len(self.runs):
            raise ValueError(f"{len(translations)} translations for {len(self.runs)} text runs")
        pieces = list(self.pieces)
        for index, text in zip(self.runs, translations, strict=True):
            raw = pieces[index]
            start = _leading_end(raw)
            end = _trailing_start(raw, start)
            pieces[index] = raw[:start] + html.escape(text, quote=False) + raw[end:]
        return "".join(pieces)


def merge(document: Document, results: Sequence[Translation]) -> Translation:
    """The document's result from its runs' (``assembly.combine``): rendered with each run's
    translation; a document without runs comes back as it is, finish reason ``empty``."""
    return combine(document.render, results)


class MarkupError(ValueError):
    """A document the parser cannot read (some malformed declarations)."""


def parse_html(document: str) -> Document:
    """Cut ``document``: HTML, or a fragment of it; unclosed elements and stray ``<`` are
    read as browsers read them. Raises :class:`MarkupError` where the standard library's parser
    gives up (e.g. ``<![`` not followed by a name)."""
    cutter = _Cutter(document)
    try:
        cutter.feed(document)
        cutter.close()
    except (AssertionError, ValueError) as err:  # _markupbase asserts on some declarations
        line, column = cutter.getpos()
        raise MarkupError(f"unreadable HTML at line {line}, column {column + 1}: {err}") from None
    return cutter.document()


class _Cutter(HTMLParser):
    """Records where each parser event starts and whether it is translatable text."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=False)  # references stay separate events, raw
        self.source = source
        self.line_starts = [0, *(match.end() for match in re.finditer("\n", source))]
        self.marks: list[tuple[int, bool]] = []  # (offset, translatable text)
        # the outermost open element whose content is not translated, and how many elements of
        # its name are open (nested ones close before it)
        self.verbatim: str | None = None
        self.depth = 0

    def document(self) -> Document:
        """The pieces between consecutive marks; adjacent text events form one run."""
        bounds: list[tuple[int, bool]] = []
        for offset, text in self.marks:
            if bounds and (offset == bounds[-1][0] or (text and bounds[-1][1])):
                continue  # the same place, or text continuing a text run
            bounds.append((offset, text))
        if not bounds or bounds[0][0] != 0:
            bounds.insert(0, (0, False))
        ends = [offset for offset, _ in bounds[1:]] + [len(self.source)]
        pieces = tuple(self.source[start:end] for (start, _), end in zip(bounds, ends,
                                                                          strict=True))
        runs = tuple(index for index, ((_, text), piece) in enumerate(zip(bounds, pieces,
                                                                           strict=True))
                     if text and _has_words(piece))
        return Document(pieces, runs)

    def _mark(self, text: bool) -> None:
        line, column = self.getpos()
        self.marks.append((self.line_starts[line - 1] + column, text and self.verbatim is None))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._mark(False)
        if tag in VOID:
            return
        if self.verbatim is None and (tag in VERBATIM or _asks_no_translation(attrs)):
            self.verbatim = tag
        if tag == self.verbatim:
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        self._mark(False)
        if tag == self.verbatim:
            self.depth -= 1
            if not self.depth:
                self.verbatim = None

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._mark(False)

    # text: character data and references (kept raw: convert_charrefs is off)
    def handle_data(self, data: str) -> None:
        self._mark(True)

    def handle_entityref(self, name: str) -> None:
        self._mark(True)

    def handle_charref(self, name: str) -> None:
        self._mark(True)

    # markup other than tags
    def handle_comment(self, data: str) -> None:
        self._mark(False)

    def handle_decl(self, decl: str) -> None:
        self._mark(False)

    def handle_pi(self, data: str) -> None:
        self._mark(False)

    def unknown_decl(self, data: str) -> None:
        self._mark(False)


def _has_words(raw: str) -> bool:
    """Whether a run holds a letter: numbers, punctuation and whitespace alone (a ``.`` after
    an inline tag, a ``|`` between links, ``11:35``) are kept as they are, not given to the
    model, which would make up words for them."""
    return any(char.isalpha() for char in html.unescape(raw))


def _leading_end(raw: str) -> int:
    """Where the edge at the start of ``raw`` ends."""
    match = LEADING.match(raw)
    return match.end() if match else 0


def _trailing_start(raw: str, floor: int) -> int:
    """Where the edge at the end of ``raw`` starts (not before ``floor``)."""
    end = len(raw)
    while end > floor:
        match = LAST_EDGE.search(raw, max(floor, end - 16), end)
        if match is None:
            break
        end = match.start()
    return end


def _asks_no_translation(attrs: list[tuple[str, str | None]]) -> bool:
    """``translate="no"`` (HTML) or the ``notranslate`` class."""
    for name, value in attrs:
        if name == "translate" and (value or "").strip().lower() == "no":
            return True
        if name == "class" and "notranslate" in (value or "").split():
            return True
    return False
