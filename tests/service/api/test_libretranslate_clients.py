"""LibreTranslate clients from PyPI (libretranslatepy, deep-translator) against a running
server: uvicorn on a port the system picks, over the scripted engines."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.error import HTTPError

import pytest
import uvicorn
from deep_translator import LibreTranslator
from deep_translator.exceptions import AuthorizationException
from libretranslatepy import LibreTranslateAPI

from service.api.app import create_app
from service.api.settings import Settings
from tests.service.api.fakes import FakeLoader, write_manifest

FRENCH = "Les fils de Japhet sortirent dans le pays et y bâtirent des villes."
GERMAN = "Die Söhne Japhets zogen in das Land hinaus und bauten dort Städte."
KEY = "client-key"
Serve = Callable[..., str]


@contextmanager
def running(settings: Settings) -> Iterator[str]:
    """The app served by uvicorn on 127.0.0.1 (port 0) in a thread; yields the base URL
    once it answers ready, and stops the server afterwards."""
    app = create_app(settings, loader=FakeLoader())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None,
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn-test")
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not (server.started and app.state.service.lifecycle.phase == "ready"):
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """``serve(**settings)``: the base URL of a running server with en->fr, fr->en, de->en."""
    for src, tgt in (("en", "fr"), ("fr", "en"), ("de", "en")):
        write_manifest(tmp_path / f"{src}-{tgt}", src=src, tgt=tgt)
    with ExitStack() as stack:
        yield lambda **overrides: stack.enter_context(
            running(Settings(models_dir=tmp_path, **overrides)))


def test_libretranslatepy_translate_detect_languages_auto(serve: Serve) -> None:
    api = LibreTranslateAPI(serve() + "/libretranslate/")
    assert api.translate("Good day.", "en", "fr") == "fr:Good day."
    assert api.translate(FRENCH, "auto", "en") == f"en:{FRENCH}"
    found = api.detect(GERMAN)
    assert found[0]["language"] == "de" and 50 < found[0]["confidence"] <= 100
    languages = {entry["code"]: entry["targets"] for entry in api.languages()}
    assert languages == {"de": ["en"], "en": ["fr"], "fr": ["en"]}


def test_libretranslatepy_with_keys(serve: Serve) -> None:
    base = serve(api_keys=KEY) + "/libretranslate/"
    assert LibreTranslateAPI(base, KEY).translate("x", "en", "fr") == "fr:x"
    with pytest.raises(HTTPError) as wrong:
        LibreTranslateAPI(base, "nope").translate("x", "en", "fr")
    assert wrong.value.code == 403
    with pytest.raises(HTTPError) as missing:
        LibreTranslateAPI(base).translate("x", "en", "fr")
    assert missing.value.code == 400


def test_deep_translator_sends_the_query_string(serve: Serve) -> None:
    base = serve(api_keys=KEY) + "/libretranslate/"
    translator = LibreTranslator(source="fr", target="en", api_key=KEY, custom_url=base)
    assert translator.translate(FRENCH) == f"en:{FRENCH}"
    auto = LibreTranslator(source="auto", target="en", api_key=KEY, custom_url=base)
    assert auto.translate(GERMAN) == f"en:{GERMAN}"
    assert auto.translate_batch([FRENCH, GERMAN]) == [f"en:{FRENCH}", f"en:{GERMAN}"]
    with pytest.raises(AuthorizationException):
        LibreTranslator(source="fr", target="en", api_key="nope",
                        custom_url=base).translate(FRENCH)


def test_clients_at_the_root(serve: Serve) -> None:
    base = serve(libretranslate_at_root=True)
    assert LibreTranslateAPI(base).translate("hi", "en", "fr") == "fr:hi"
    assert LibreTranslateAPI(base).detect(FRENCH)[0]["language"] == "fr"
    translator = LibreTranslator(source="fr", target="en", api_key="unused",
                                 custom_url=base + "/")
    assert translator.translate(FRENCH) == f"en:{FRENCH}"
