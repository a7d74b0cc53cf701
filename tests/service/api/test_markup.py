"""HTML documents cut into markup and text runs, and put back together."""

from __future__ import annotations

import math

import pytest

from inference.translator import Alternative, Translation
from service.api.markup import MarkupError, merge, parse_html

PAGE = ('<!DOCTYPE html>\n<html><head><title>The title</title>'
        '<style>p > b { color: red }</style></head>\n'
        '<body class="a>b"><p>Hello &amp; <B>good</B>\n   morning&#33;</p><!-- a comment -->'
        '<script>if (a<b) x = "</p>";</script><br/><img src="x.png" alt="kept">'
        '<p translate="no">not <i>this</i> one</p><span class="x notranslate">nor this</span> '
        '<pre>code()</pre><?php echo 1 ?><![CDATA[raw]]> &nbsp;Last words.&nbsp;\n</body>'
        '</html>')


def test_pieces_are_the_document_and_runs_its_prose() -> None:
    document = parse_html(PAGE)
    assert "".join(document.pieces) == PAGE
    assert document.sources == ["The title", "Hello &", "good", "morning!", "Last words."]


def test_render_replaces_runs_only_escaping_the_translations() -> None:
    document = parse_html(PAGE)
    rendered = document.render(["T0", "T<1>", "T2", "T&3", "T4"])
    expected = (PAGE.replace("The title", "T0").replace("Hello &amp;", "T&lt;1&gt;")
                .replace("<B>good</B>", "<B>T2</B>").replace("morning&#33;", "T&amp;3")
                .replace("Last words.", "T4"))
    assert rendered == expected


@pytest.mark.parametrize("html", [
    "", "   ", "<p></p>", "<br>", "&nbsp;", "<!-- only a comment -->",
    "<code>x < y</code>", '<div translate="NO">Nothing here</div>',
    "<p>11:35</p> | <i>!</i> &mdash; (2)",
])
def test_documents_without_prose_have_no_runs(html: str) -> None:
    document = parse_html(html)
    assert document.runs == () and document.render([]) == html


def test_an_element_not_to_translate_ends_at_its_own_end_tag() -> None:
    document = parse_html('<div translate="no">a <div>b</div> c</div> d <code>e<code>f'
                          '</code>g</code> h')
    assert document.sources == ["d", "h"]


def test_fragments_and_stray_brackets_are_text() -> None:
    document = parse_html("1 < 2 and <unclosed> text")
    assert document.sources == ["1 < 2 and", "text"]
    assert document.render(["un < deux", "texte"]) == "un &lt; deux <unclosed> texte"


def test_unreadable_markup_is_an_error_naming_where() -> None:
    with pytest.raises(MarkupError, match="line 2, column 7"):
        parse_html("fine\nok <![ broken")


def test_render_wants_one_translation_per_run() -> None:
    with pytest.raises(ValueError, match="1 translations for 2 text runs"):
        parse_html("<p>a</p><p>b</p>").render(["x"])


def test_merge_joins_the_runs_results_as_sentences_are_joined() -> None:
    document = parse_html("<p>a</p> <p>b</p>")
    runs = [Translation("A", -1.0, "eos", [Alternative("A", -1.0), Alternative("A2", -2.0)],
                        source_tokens=2, target_tokens=3),
            Translation("B", -3.0, "length", [Alternative("B", -3.0)], truncated=True,
                        source_tokens=4, target_tokens=5)]
    merged = merge(document, runs)
    assert merged == Translation(
        "<p>A</p> <p>B</p>", -2.0, "length",
        [Alternative("<p>A</p> <p>B</p>", -2.0), Alternative("<p>A2</p> <p>B</p>", -2.5)],
        truncated=True, source_tokens=6, target_tokens=8)
    empty = merge(parse_html("<br>"), [])
    assert (empty.text, empty.finish_reason, empty.alternatives) == ("<br>", "empty", [])
    assert math.isnan(empty.score)
