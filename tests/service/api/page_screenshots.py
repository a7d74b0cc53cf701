"""Screenshots of the translation page for the docs (not a test): the shipped models served,
a text translated, the page captured at desktop and phone width.

    python -m tests.service.api.page_screenshots --models models --out docs
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import Browser, expect, sync_playwright

from service.api.app import create_app
from service.api.settings import Settings
from tests.service.api.browser import chromium_path, live_server

TEXT = ("In the beginning God created the heaven and the earth. And God said, Let there be "
        "light: and there was light.")
SIZES = {"desktop": {"width": 1200, "height": 800}, "phone": {"width": 390, "height": 844}}


def capture(browser: Browser, url: str, name: str, out: Path) -> Path:
    """Translate ``TEXT`` at the viewport ``SIZES[name]`` and save ``out/page-<name>.png``."""
    context = browser.new_context(viewport=SIZES[name])  # type: ignore[arg-type]
    page = context.new_page()
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    page.get_by_label("From", exact=True).select_option("en")
    page.get_by_label("To", exact=True).select_option("fr")
    page.get_by_label("Alternatives", exact=True).fill("1")
    page.get_by_label("Text to translate", exact=True).fill(TEXT)
    page.get_by_role("button", name="Translate", exact=True).click()
    expect(page.locator("#meta")).to_contain_text("Model:", timeout=60_000)
    path = out / f"page-{name}.png"
    page.screenshot(path=path, full_page=True)
    context.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    settings = Settings(models_dir=args.models, threads=1)
    with live_server(create_app(settings)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        for name in SIZES:
            print(capture(browser, url, name, args.out))
        browser.close()


if __name__ == "__main__":
    main()
