"""HTML documents cut into markup and text runs, and put back together."""

from __future__ import annotations

import pytest

from service.api.markup import MarkupError, parse_html

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
