"""The translation page at ``GET /``, driven in headless Chromium against a live server.

The fake models translate ``x`` to ``<target>:x`` (``fakes.FakeEngine``), so what the page
shows tells which model answered, and a streamed text shows the prefix on every sentence; the
route the page chose is read from the request it sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, expect, sync_playwright

from inference.languages import Pair
from inference.translator import Translation
from service.api.app import create_app
from service.api.batcher import DecodeOptions
from service.api.routes.page import STATIC
from service.api.settings import Settings
from tests.service.api.browser import chromium_path, live_server, post_json
from tests.service.api.fakes import FakeLoader, write_manifest

SHIPPED = Path(__file__).resolve().parents[3] / "models" / "transformer-en-fr"
CHAR_LIMIT = 300  # above the page's streaming threshold (200), so both routes can be over it
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 30_000  # longest wait for the page to show something (a busy CI machine, the real model)
SENTENCES = ["The weather was cold and grey for most of the morning.",
             "We walked along the river until the sun came out.",
             "Then we found a small cafe and ordered hot chocolate.",
             "Nobody wanted to leave before the rain started again."]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``en-fr``, ``en-de`` and ``fr-en``: English has two targets, French one."""
    root = tmp_path_factory.mktemp("page") / "models"
    write_manifest(root / "en-fr")
    write_manifest(root / "en-de", tgt="de")
    write_manifest(root / "fr-en", src="fr", tgt="en")
    return root


def serve(models: Path, **overrides: Any) -> Iterator[str]:
    settings = Settings(models_dir=models, max_chars_per_text=CHAR_LIMIT, **overrides)
    with live_server(create_app(settings, loader=FakeLoader())) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def base_url(models: Path) -> Iterator[str]:
    """The app with the fake models and a character limit of ``CHAR_LIMIT``."""
    yield from serve(models)


@pytest.fixture(scope="module")
def keyed_url(models: Path) -> Iterator[str]:
    """The same app requiring the API key ``secret``."""
    yield from serve(models, api_keys="secret")


@pytest.fixture(scope="module")
def exploding_url(models: Path) -> Iterator[str]:
    """One sentence per engine call; the ``en-fr`` engine fails on a text with "boom"."""
    loader = FakeLoader()
    settings = Settings(models_dir=models, max_batch_tokens=1)
    with live_server(create_app(settings, loader=loader)) as url:
        engine = loader.engines[models / "en-fr"]
        translate_fine = engine.translate

        def translate_or_explode(texts: list[str], options: DecodeOptions,
                                 pairs: Sequence[Pair | None] | None = None
                                 ) -> list[Translation]:
            if any("boom" in text for text in texts):
                raise RuntimeError("engine exploded")
            return translate_fine(texts, options, pairs)

        engine.translate = translate_or_explode  # type: ignore[method-assign]
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True)
        yield chromium
        chromium.close()


CONTRASTED = ["label[for=text]", ".hint", "#translation", "#translate-button", "#copy",
              ".bar a", "legend", "#error"]
# Each element's text colour and the first opaque background among it and its ancestors.
COLOURS = """selectors => selectors.map(selector => {
  const element = document.querySelector(selector);
  let node = element, background = "rgb(255, 255, 255)";
  for (; node; node = node.parentElement) {
    const colour = getComputedStyle(node).backgroundColor;
    if (colour !== "rgba(0, 0, 0, 0)" && colour !== "transparent") { background = colour; break; }
  }
  return [selector, getComputedStyle(element).color, background];
})"""


def contrast(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio of two opaque CSS ``rgb(r, g, b)`` colours."""
    def luminance(colour: str) -> float:
        channels = [int(c) / 255 for c in re.findall(r"\d+", colour)[:3]]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def open_page(browser: Browser, url: str, viewport: dict[str, int] = DESKTOP) -> Page:
    """A fresh context at ``url``, once the page has loaded its languages and settings."""
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    page = context.new_page()
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return page


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    page = open_page(browser, base_url)
    yield page
    page.context.close()


def translate(page: Page, text: str, *, source: str | None = "en",
              target: str | None = "fr") -> None:
    """Pick the languages by their labels, type ``text`` and press Translate."""
    if source is not None:
        page.get_by_label("From", exact=True).select_option(source)
    if target is not None:
        page.get_by_label("To", exact=True).select_option(target)
    page.get_by_label("Text to translate", exact=True).fill(text)
    page.get_by_role("button", name="Translate", exact=True).click()


def options_of(page: Page, label: str) -> list[str]:
    values: list[str] = page.get_by_label(label, exact=True).locator("option").evaluate_all(
        "options => options.map(o => o.value)")
    return values


def test_page_is_served_from_the_package_and_a_setting_turns_it_off(models: Path) -> None:
    with TestClient(create_app(Settings(models_dir=models), loader=FakeLoader())) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert '<script src="/static/page.js"' in page.text
        script = client.get("/static/page.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    with TestClient(create_app(Settings(models_dir=models, ui=False),
                               loader=FakeLoader())) as client:
        assert client.get("/").status_code == 404
        assert client.get("/static/page.js").status_code == 404
    for path in STATIC.iterdir():  # works offline: no file loads anything from elsewhere
        text = path.read_text()
        assert "http://" not in text and "https://" not in text, path.name


def test_targets_follow_the_source(page: Page) -> None:
    assert options_of(page, "From") == ["auto", "en", "fr"]
    page.get_by_label("From", exact=True).select_option("en")
    assert options_of(page, "To") == ["de", "fr"]
    page.get_by_label("From", exact=True).select_option("fr")
    assert options_of(page, "To") == ["en"]
    page.get_by_label("From", exact=True).select_option("auto")
    assert options_of(page, "To") == ["de", "en", "fr"]
    expect(page.get_by_label("API key", exact=True)).to_be_hidden()  # keys are off


def test_translates_a_typed_sentence_and_names_the_model(page: Page) -> None:
    with page.expect_response("**/translate") as answer:
        translate(page, "The cat eats fish.", target="de")
    sent = answer.value.request.post_data_json
    assert sent is not None
    assert sent["source_lang"] == "en" and "beam_size" not in sent  # the server's default
    expect(page.locator("#translation")).to_have_text("de:The cat eats fish.")
    expect(page.locator("#meta")).to_have_text(re.compile(r"^Model: en-de · \d+\.\d\d s$"))
    expect(page.locator("#error")).to_be_hidden()


def test_a_long_text_is_streamed_sentence_by_sentence(page: Page) -> None:
    text = " ".join(SENTENCES)
    with page.expect_response("**/translate/stream") as answer:
        translate(page, text)
    assert answer.value.headers["content-type"].startswith("text/event-stream")
    expect(page.locator("#translation")).to_have_text(" ".join(f"fr:{s}" for s in SENTENCES))
    expect(page.locator("#meta")).to_contain_text("Model: en-fr")
    expect(page.locator("#meta")).to_contain_text("streamed sentence by sentence")


def test_a_stream_failing_midway_keeps_the_sentences_and_shows_the_error(
        browser: Browser, exploding_url: str) -> None:
    page = open_page(browser, exploding_url)
    translate(page, " ".join([*SENTENCES[:2], "Then boom.", *SENTENCES[2:]]))
    expect(page.locator("#error")).to_have_text("Error 500: the translation engine failed")
    expect(page.locator("#translation")).to_have_text(f"fr:{SENTENCES[0]} fr:{SENTENCES[1]}")
    page.context.close()


def test_beam_size_and_alternatives(page: Page) -> None:
    page.get_by_label("Beam size", exact=True).fill("3")
    page.get_by_label("Alternatives", exact=True).fill("2")
    with page.expect_request("**/translate") as sent:
        translate(page, "Good morning.")
    body = sent.value.post_data_json
    assert body is not None
    assert (body["beam_size"], body["num_hypotheses"]) == (3, 3)
    expect(page.locator("#translation")).to_have_text("fr:Good morning.")
    expect(page.locator("#alternatives li")).to_have_text(
        ["fr:Good morning.#1", "fr:Good morning.#2"])


def test_copy_puts_the_translation_on_the_clipboard(page: Page) -> None:
    translate(page, "Good morning.")
    expect(page.locator("#translation")).to_have_text("fr:Good morning.")
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#copy-status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == "fr:Good morning."


def test_swap_reverses_the_languages_and_the_texts(page: Page) -> None:
    translate(page, "Good morning.")
    expect(page.locator("#translation")).to_have_text("fr:Good morning.")
    page.get_by_role("button", name="Swap languages").click()
    expect(page.get_by_label("From", exact=True)).to_have_value("fr")
    expect(page.get_by_label("To", exact=True)).to_have_value("en")
    expect(page.get_by_label("Text to translate", exact=True)).to_have_value("fr:Good morning.")
    expect(page.get_by_role("button", name="Swap languages")).to_be_enabled()  # en-fr back
    page.get_by_label("From", exact=True).select_option("en")
    page.get_by_label("To", exact=True).select_option("de")  # nothing translates German back
    expect(page.get_by_role("button", name="Swap languages")).to_be_disabled()


def test_keyboard_only(page: Page) -> None:
    page.get_by_label("To", exact=True).select_option("fr")
    text_box = page.get_by_label("Text to translate", exact=True)
    text_box.focus()
    page.keyboard.type("Hello there.")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#translation")).to_have_text("fr:Hello there.")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Translate", exact=True)).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Copy")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#copy-status")).to_have_text("Copied.")


def test_every_control_has_a_label_and_text_has_contrast(page: Page) -> None:
    unlabelled = page.evaluate("""[...document.querySelectorAll("input, select, textarea")]
        .filter(e => e.labels.length === 0).map(e => e.id)""")
    assert unlabelled == []
    translate(page, "Good morning.")
    expect(page.get_by_role("button", name="Copy")).to_be_enabled()
    page.get_by_label("Text to translate", exact=True).fill("")
    page.get_by_role("button", name="Translate", exact=True).click()
    expect(page.locator("#error")).to_have_text("Type a text to translate first.")
    for selector, foreground, background in page.evaluate(COLOURS, CONTRASTED):
        ratio = contrast(foreground, background)
        assert ratio >= 4.5, f"{selector}: {foreground} on {background} is {ratio:.2f}:1"


@pytest.mark.parametrize("alternatives", ["0", "1"], ids=["streamed", "translate"])
def test_over_the_character_limit_the_error_is_shown_in_words(page: Page,
                                                               alternatives: str) -> None:
    page.get_by_label("Alternatives", exact=True).fill(alternatives)
    text = "x" * (CHAR_LIMIT + 1)
    translate(page, text)
    expect(page.locator("#error")).to_have_text(
        f"Error 422: text has {CHAR_LIMIT + 1} characters; the limit is {CHAR_LIMIT}")
    expect(page.locator("#translation")).to_have_text("")


@pytest.mark.parametrize(("text", "detected"), [
    (SENTENCES[0], r"^Detected: English \(\d+%\)$"),  # /translate: language and confidence
    (" ".join(SENTENCES), r"^Detected: English$"),  # /translate/stream: its start event
], ids=["translate", "streamed"])
def test_detect_language(page: Page, text: str, detected: str) -> None:
    with page.expect_request(re.compile(r"/translate(/stream)?$")) as sent:
        translate(page, text, source="auto", target="de")
    assert sent.value.post_data_json == {"text": text, "source_lang": "auto",
                                         "target_lang": "de", "num_hypotheses": 1}
    expect(page.locator("#translation")).to_have_text(
        " ".join(f"de:{s}" for s in SENTENCES if s in text))
    expect(page.locator("#detected")).to_have_text(re.compile(detected))


def test_a_text_file_is_translated_and_downloaded(page: Page, tmp_path: Path) -> None:
    source = tmp_path / "note.txt"
    source.write_text("The cat eats fish.\nGood morning.\n")
    page.get_by_label("From", exact=True).select_option("en")
    page.get_by_label("To", exact=True).select_option("fr")
    page.get_by_label("File to translate", exact=True).set_input_files(source)
    button = page.get_by_role("button", name="Translate file")
    button.click()
    expect(button).to_be_enabled()  # disabled while the upload is answered
    assert page.locator("#file-error").is_hidden(), page.locator("#file-error").text_content()
    link = page.get_by_role("link", name="Download the translation of note.txt")
    with page.expect_download() as download:
        link.click()
    assert Path(download.value.path()).read_text() == "fr:The cat eats fish.\nfr:Good morning.\n"


def test_a_file_the_server_refuses_is_explained(page: Page, tmp_path: Path) -> None:
    source = tmp_path / "latin1.txt"
    source.write_bytes("Déjà vu.".encode("latin-1"))
    page.get_by_label("File to translate", exact=True).set_input_files(source)
    page.get_by_role("button", name="Translate file").click()
    expect(page.locator("#file-error")).to_have_text(
        "Error 400: Invalid request: the file is not UTF-8 text")
    expect(page.get_by_role("link")).to_have_count(1)  # only "API documentation"


def test_an_api_key_field_when_the_server_requires_keys(browser: Browser,
                                                        keyed_url: str) -> None:
    page = open_page(browser, keyed_url)
    key = page.get_by_label("API key", exact=True)
    expect(key).to_be_visible()  # /libretranslate/frontend/settings: keyRequired
    translate(page, "Good morning.")
    expect(page.locator("#error")).to_contain_text("Error 401: an API key is required")
    key.fill("wrong")
    page.get_by_role("button", name="Translate", exact=True).click()
    expect(page.locator("#error")).to_have_text("Error 401: the API key is not valid")
    key.fill("secret")
    page.get_by_role("button", name="Translate", exact=True).click()
    expect(page.locator("#translation")).to_have_text("fr:Good morning.")
    expect(page.locator("#error")).to_be_hidden()
    page.context.close()


def test_usable_on_a_phone_sized_screen(browser: Browser, base_url: str) -> None:
    page = open_page(browser, base_url, PHONE)
    translate(page, "Good morning.")
    expect(page.locator("#translation")).to_have_text("fr:Good morning.")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the screen"
    page.context.close()


@pytest.mark.slow
def test_the_shipped_model_through_the_page(browser: Browser) -> None:
    """The page shows what the API answers for the same text, short and streamed."""
    settings = Settings(models_dir=SHIPPED, threads=1)
    with live_server(create_app(settings)) as url:
        page = open_page(browser, url)
        short, long = SENTENCES[0], " ".join(SENTENCES)
        route = {"source_lang": "en", "target_lang": "fr", "num_hypotheses": 1}
        answer = post_json(f"{url}/translate", {"text": short, **route})
        translate(page, short)
        expect(page.locator("#translation")).to_have_text(answer["translations"][0]["text"])
        expect(page.locator("#meta")).to_contain_text("Model: transformer-en-fr")
        done = post_json(f"{url}/translate/stream", {"text": long, **route})
        translate(page, long)
        expect(page.locator("#meta")).to_contain_text("streamed sentence by sentence")
        expect(page.locator("#translation")).to_have_text(done["translations"][0])
        page.context.close()
