"""``GET /``: the translation page, plain HTML, CSS and JavaScript shipped in the package.

The page calls the public API from the browser (``/libretranslate/languages``,
``/translate``, ``/translate/stream``, ``/libretranslate/translate_file`` ...); nothing here
translates. ``TRANSLATE_UI=false`` leaves both the page and its files unrouted (404).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent.parent / "static"
# Only the page's own files and API calls: no inline script, no third-party origin.
HEADERS = {"Content-Security-Policy": "default-src 'self'; base-uri 'none'; "
                                      "form-action 'self'; frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    """The translation page."""
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)


def install(app: FastAPI) -> None:
    """Route ``GET /`` and the page's files under ``/static/``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
