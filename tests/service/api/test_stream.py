"""``POST /translate/stream`` with a fake engine: the event stream, its order, its errors,
the JSON errors before it starts, and cancellation when the client goes away."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from pydantic import BaseModel

from inference.bundle import read_manifest
from inference.languages import Pair
from inference.text import segment
from inference.translator import Translation
from service.api.batcher import BatcherClosedError, DecodeOptions, QueueFullError
from service.api.registry import ModelEntry
from service.api.routing import Route
from service.api.schemas import StreamDone, StreamSentence, StreamStart
from service.api.streaming import Sentence, Stream, split_texts
from service.api.translation import Options
from tests.service.api.fakes import (
    FakeEngine,
    FakeLoader,
    MakeClient,
    Reply,
    error_of,
    write_manifest,
)

EN_FR = {"source_lang": "en", "target_lang": "fr"}
TEXT = "The cat eats fish. Does the dog run? Yes!  It runs fast."
SENTENCES = ["The cat eats fish.", "Does the dog run?", "Yes!", "It runs fast."]
SEPARATORS = [" ", " ", "  ", ""]  # what follows each sentence in TEXT
Event = tuple[str, dict[str, Any]]


def parse_sse(body: str) -> list[Event]:
    """``(event, data)`` pairs of an SSE body, checking the wire format on the way."""
    assert body.endswith("\n\n"), body
    events = []
    for block in body.split("\n\n")[:-1]:
        lines = block.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: "), block
        assert lines[1].startswith("data: "), block
        events.append((lines[0].removeprefix("event: "), json.loads(lines[1][len("data: "):])))
    return events


def stream(client: TestClient, body: dict[str, Any]) -> list[Event]:
    """POST to the stream and parse it, checking the SSE headers."""
    response = client.post("/translate/stream", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    return parse_sse(response.text)


def engine_of(loader: FakeLoader, models_dir: Path, name: str = "en-fr") -> FakeEngine:
    return loader.engines[models_dir / name]


def test_one_event_per_sentence_in_order_then_done(client: TestClient) -> None:
    events = stream(client, {"text": TEXT, **EN_FR})
    assert [name for name, _ in events] == ["start", *["sentence"] * 4, "done"]
    assert events[0][1] == {"model": "en-fr", "source_lang": "en", "target_lang": "fr",
                            "sentences": 4}
    sentences = [data for name, data in events if name == "sentence"]
    assert [s["index"] for s in sentences] == [0, 1, 2, 3]
    pairs = list(zip(SENTENCES, SEPARATORS, strict=True))
    assert [s["source"] for s in sentences] == [f"{s}{sep}" for s, sep in pairs]
    assert "".join(s["source"] for s in sentences) == TEXT
    assert [s["text"] for s in sentences] == [f"fr:{s}{sep}" for s, sep in pairs]
    assert all(s["text_index"] == 0 and s["finish_reason"] == "eos" for s in sentences)
    done = events[-1][1]
    assert done["translations"] == ["fr:The cat eats fish. fr:Does the dog run? fr:Yes!  "
                                    "fr:It runs fast."]
    assert done["sentences"] == 4 and done["model"] == "en-fr"
    assert done["usage"] == {"texts": 1,
                             "source_tokens": sum(s["source_tokens"] for s in sentences),
                             "target_tokens": sum(s["target_tokens"] for s in sentences)}
    models: dict[str, type[BaseModel]] = {"start": StreamStart, "sentence": StreamSentence,
                                          "done": StreamDone}
    for name, data in events:  # every event's data is exactly its documented model
        assert set(data) == set(models[name].model_fields), name
        models[name].model_validate(data)


def test_every_sentence_is_its_own_work_item(make_client: MakeClient, models_dir: Path) -> None:
    loader = FakeLoader()
    client = make_client(loader, max_batch_tokens=1)  # one queued item per engine call
    warmup = len(engine_of(loader, models_dir).calls)
    stream(client, {"text": TEXT, **EN_FR})
    calls = engine_of(loader, models_dir).calls[warmup:]
    assert [texts for texts, _ in calls] == [[s] for s in SENTENCES]


@pytest.mark.parametrize("options", [{}, {"beam_size": 3, "num_hypotheses": 2,
                                          "return_scores": False, "max_length": 20}])
def test_same_results_as_translate(client: TestClient, options: dict[str, Any]) -> None:
    """Each sentence event is what ``/translate`` answers for that sentence with the same
    options, between the separators that follow it in the text; the events concatenate to
    what ``/translate`` answers for the whole text, and ``done`` holds that."""
    events = stream(client, {"text": TEXT, **EN_FR, **options})
    reference = client.post("/translate", json={"text": SENTENCES, **EN_FR, **options}).json()
    whole = client.post("/translate", json={"text": TEXT, **EN_FR, **options}).json()
    sentences = [data for name, data in events if name == "sentence"]
    expected = [{**ref, "text": ref["text"] + sep,
                 "alternatives": [{**a, "text": a["text"] + sep} for a in ref["alternatives"]]}
                for ref, sep in zip(reference["translations"], SEPARATORS, strict=True)]
    keys = set(reference["translations"][0])
    assert [{k: s[k] for k in keys} for s in sentences] == expected
    assert "".join(s["text"] for s in sentences) == whole["translations"][0]["text"]
    assert events[-1][1]["translations"] == [whole["translations"][0]["text"]]
    assert events[-1][1]["usage"]["source_tokens"] == reference["usage"]["source_tokens"]


def test_a_list_is_streamed_text_by_text(client: TestClient) -> None:
    events = stream(client, {"text": ["One. Two.", " ", "Three."], **EN_FR})
    sentences = [data for name, data in events if name == "sentence"]
    assert [(s["text_index"], s["source"], s["text"]) for s in sentences] == [
        (0, "One. ", "fr:One. "), (0, "Two.", "fr:Two."), (1, " ", " "),
        (2, "Three.", "fr:Three.")]
    assert sentences[2]["finish_reason"] == "empty" and sentences[2]["score"] is None
    assert events[-1][1]["translations"] == ["fr:One. fr:Two.", " ", "fr:Three."]
    assert events[-1][1]["usage"]["texts"] == 3


def _same_error(stream_reply: Reply, translate_reply: Reply, status: int) -> str:
    """Both answers are the same JSON error (request ids aside); its code."""
    streamed, plain = error_of(stream_reply, status), error_of(translate_reply, status)
    streamed.pop("request_id"), plain.pop("request_id")
    assert streamed == plain
    return str(streamed["code"])


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"text": "x" * 11, **EN_FR}, 422, "text_too_long"),
    ({"text": ["a"] * 4, **EN_FR}, 422, "too_many_texts"),
    ({"text": "x", "beam_size": 6, **EN_FR}, 422, "beam_size_too_large"),
    ({"text": 5, **EN_FR}, 422, "invalid_request"),
    ({"text": "x", "source_lang": "en", "target_lang": "xx"}, 400,
     "unsupported_language_pair"),
    ({"text": "x", "model": "nope"}, 400, "unknown_model"),
    ({"text": "x"}, 422, "missing_route"),
])
def test_validation_errors_are_json_like_translate(make_client: MakeClient, body: dict[str, Any],
                                                   status: int, code: str) -> None:
    client = make_client(max_texts=3, max_chars_per_text=10, max_beam_size=5)
    assert _same_error(client.post("/translate/stream", json=body),
                       client.post("/translate", json=body), status) == code


def test_html_is_not_streamed(client: TestClient) -> None:
    body = {"text": "<p>Hi.</p>", "format": "html", **EN_FR}
    error = error_of(client.post("/translate/stream", json=body), 400)
    assert error["code"] == "unsupported_format" and error["field"] == "format"
    assert "/translate" in str(error["message"])
    assert client.post("/translate", json=body).status_code == 200


def test_same_key_check_as_translate(make_client: MakeClient) -> None:
    client = make_client(api_keys="alpha")
    body = {"text": "x", **EN_FR}
    assert _same_error(client.post("/translate/stream", json=body),
                       client.post("/translate", json=body), 401) == "missing_api_key"
    assert stream_ok(client.post("/translate/stream", json=body,
                                 headers={"Authorization": "Bearer alpha"}))


def stream_ok(response: Reply) -> bool:
    return response.status_code == 200 and parse_sse(response.text)[-1][0] == "done"


def test_routing_by_model(client: TestClient) -> None:
    events = stream(client, {"text": "Hi. Bye.", "model": "en-de"})
    assert events[0][1]["model"] == "en-de" and events[-1][1]["translations"] == [
        "de:Hi. de:Bye."]


def test_more_sentences_than_the_queue_holds_is_a_422(make_client: MakeClient) -> None:
    client = make_client(queue_size=3)
    error = error_of(client.post("/translate/stream", json={"text": TEXT, **EN_FR}), 422)
    assert error["code"] == "too_many_sentences" and error["limit"] == 3
    assert stream_ok(client.post("/translate/stream", json={"text": "One. Two. Three.", **EN_FR}))


def test_full_queue_is_a_503_before_the_stream(client: TestClient,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    entry = client.app.state.service.registry.entries["en-fr"]  # type: ignore[attr-defined]

    def full(*args: object, **kwargs: object) -> None:
        raise QueueFullError(7)

    monkeypatch.setattr(entry.batcher, "submit_each", full)
    response = client.post("/translate/stream", json={"text": TEXT, **EN_FR})
    assert error_of(response, 503)["code"] == "queue_full"
    assert response.headers["retry-after"] == "1"


def _failing_on(engine: FakeEngine, word: str, *, stall: threading.Event | None = None
                ) -> None:
    """Make ``engine`` fail (or, with ``stall``, block until that event is set, at most 10 s)
    on texts containing ``word``."""
    real = engine.translate

    def translate(texts: list[str], options: DecodeOptions,
                  pairs: Sequence[Pair | None] | None = None) -> list[Translation]:
        if any(word in text for text in texts):
            if stall is None:
                raise RuntimeError("engine exploded")
            stall.wait(10)
        return real(texts, options, pairs)

    engine.translate = translate  # type: ignore[method-assign]


def test_engine_error_mid_stream_is_an_error_event(make_client: MakeClient,
                                                   models_dir: Path) -> None:
    loader = FakeLoader()
    client = make_client(loader, max_batch_tokens=1)
    _failing_on(engine_of(loader, models_dir), "boom")
    response = client.post("/translate/stream", json={"text": "Fine. Then boom. Never.",
                                                      **EN_FR},
                           headers={"X-Request-ID": "req-7"})
    assert response.status_code == 200
    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["start", "sentence", "error"]
    assert events[1][1]["text"] == "fr:Fine. "
    assert events[2][1] == {"status": 500, "error": {
        "code": "engine_error", "message": "the translation engine failed",
        "request_id": "req-7"}}
    assert "exploded" not in response.text
    assert stream_ok(client.post("/translate/stream", json={"text": "Still. Fine.", **EN_FR}))


def test_deadline_mid_stream_is_an_error_event(make_client: MakeClient,
                                               models_dir: Path) -> None:
    loader = FakeLoader()
    client = make_client(loader, max_batch_tokens=1)
    stall = threading.Event()
    _failing_on(engine_of(loader, models_dir), "slow", stall=stall)
    try:
        events = stream(client, {"text": "Quick. A slow one. Never.", "timeout": 1.0, **EN_FR})
    finally:
        stall.set()
    assert [name for name, _ in events] == ["start", "sentence", "error"]
    error = events[2][1]
    assert error["status"] == 504 and error["error"]["code"] == "deadline_exceeded"
    assert error["error"]["field"] == "timeout" and error["error"]["limit"] == 1.0


def test_openapi_describes_the_stream(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/translate/stream"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/TranslateRequest")
    content = operation["responses"]["200"]["content"]
    assert set(content) == {"text/event-stream"}
    events = content["text/event-stream"]["itemSchema"]["oneOf"]
    assert [e["properties"]["event"]["const"] for e in events] == [
        "start", "sentence", "done", "error"]
    refs = json.dumps(events).split('"$ref": "#/components/schemas/')[1:]
    assert {ref.split('"')[0] for ref in refs} <= set(schema["components"]["schemas"])
    for status in ("400", "401", "413", "422", "503"):
        assert operation["responses"][status]["content"]["application/json"]["schema"][
            "$ref"].endswith("/ErrorBody")


# The stream itself, driven directly: order, shutdown, disconnects.

def fake_request() -> tuple[Request, asyncio.Queue[dict[str, str]]]:
    """A request whose ``receive`` answers what the test puts in the queue."""
    messages: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    return Request({"type": "http", "method": "POST", "path": "/", "headers": []},
                   messages.get), messages


@pytest.fixture
def entry(tmp_path: Path) -> ModelEntry:
    """A registry entry with an en->fr manifest (no engine: the tests make the futures)."""
    directory = write_manifest(tmp_path / "en-fr")
    return ModelEntry("en-fr", directory, manifest=read_manifest(directory))


def direct_stream(entry: ModelEntry, texts: list[str]
                  ) -> tuple[Stream, list[asyncio.Future[Translation]]]:
    """A stream over futures the test completes by hand."""
    sentences = split_texts([segment(text, language="en") for text in texts])
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Translation]] = [loop.create_future() for _ in sentences]
    options = Options(DecodeOptions(), True, 5.0)
    return Stream(Route(entry, "en", "fr"), options, len(texts), sentences, futures), futures


def done_with(text: str) -> Translation:
    return Translation(text.upper(), -0.5, "eos", source_tokens=2, target_tokens=2)


async def next_event(events: Any, within: float = 1.0) -> Event:
    chunk = await asyncio.wait_for(anext(events), within)
    (event,) = parse_sse(chunk)
    return event


async def loop_turns(count: int) -> None:
    """Let the event loop run ``count`` rounds of ready callbacks (no wall-clock wait)."""
    for _ in range(count):
        await asyncio.sleep(0)


def test_a_sentence_waits_for_every_earlier_one(entry: ModelEntry) -> None:
    async def scenario() -> None:
        request, _ = fake_request()
        stream_, futures = direct_stream(entry, ["one. two. three."])
        events = stream_.events(request)
        assert (await next_event(events))[0] == "start"
        pending = asyncio.ensure_future(next_event(events))
        futures[2].set_result(done_with("three."))
        futures[1].set_result(done_with("two."))
        await loop_turns(10)  # what is ready has had its chance to be sent
        assert not pending.done()  # 1 and 2 are ready, 0 is not
        futures[0].set_result(done_with("one."))
        assert [(await pending)[1]["text"], (await next_event(events))[1]["text"],
                (await next_event(events))[1]["text"]] == ["ONE. ", "TWO. ", "THREE."]
        name, data = await next_event(events)
        assert name == "done" and data["translations"] == ["ONE. TWO. THREE."]
        with pytest.raises(StopAsyncIteration):
            await anext(events)

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_shutdown_mid_stream_is_an_error_event_and_the_rest_is_cancelled(entry: ModelEntry) -> None:
    async def scenario() -> None:
        request, _ = fake_request()
        stream_, futures = direct_stream(entry, ["one. two. three."])
        events = stream_.events(request)
        await next_event(events)
        futures[0].set_result(done_with("one."))
        futures[1].set_exception(BatcherClosedError("the server is shutting down"))
        assert (await next_event(events))[0] == "sentence"
        name, data = await next_event(events)
        assert name == "error" and data["status"] == 503
        assert data["error"]["code"] == "shutting_down"
        with pytest.raises(StopAsyncIteration):
            await anext(events)
        assert futures[2].cancelled()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_disconnect_cancels_the_remaining_sentences(entry: ModelEntry) -> None:
    async def scenario() -> None:
        request, messages = fake_request()
        stream_, futures = direct_stream(entry, ["one. two. three."])
        events = stream_.events(request)
        await next_event(events)
        futures[0].set_result(done_with("one."))
        await next_event(events)
        await messages.put({"type": "http.disconnect"})
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(events), 1)
        assert futures[1].cancelled() and futures[2].cancelled()

    asyncio.run(asyncio.wait_for(scenario(), 10))


async def _post_then_disconnect(app: Any, body: dict[str, Any], spec: str,
                                entered: threading.Event) -> list[bytes]:
    """Drive the app as a server would: send ``body``, read until the ``start`` event and
    until ``entered`` is set (at most 5 s), then report the client gone; the chunks
    received."""
    gone = asyncio.Event()
    chunks: list[bytes] = []
    raw = json.dumps(body).encode()
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": spec},
             "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/translate/stream", "raw_path": b"/translate/stream", "root_path": "",
             "query_string": b"", "client": ("test", 1), "server": ("test", 80),
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(raw)).encode())]}
    sent_body = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await gone.wait()
        assert await asyncio.to_thread(entered.wait, 5), "the engine was never called"
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            chunks.append(message["body"])
            gone.set()

    await asyncio.wait_for(app(scope, receive, send), 5)
    return chunks


@pytest.mark.parametrize("spec", ["2.3", "2.4"])  # starlette watches disconnects below 2.4
def test_client_disconnect_drops_the_queued_sentences(make_client: MakeClient,
                                                      models_dir: Path, spec: str) -> None:
    loader = FakeLoader()
    client = make_client(loader, max_batch_tokens=1)
    engine = engine_of(loader, models_dir)
    warmup = len(engine.calls)
    engine.release = threading.Event()  # the first sentence blocks in the engine
    engine.entered.clear()
    chunks = client.portal.call(  # type: ignore[union-attr]
        _post_then_disconnect, client.app, {"text": TEXT, **EN_FR}, spec, engine.entered)
    assert [name for name, _ in parse_sse(b"".join(chunks).decode())] == ["start"]
    engine.release.set()
    # oldest first: queued sentences still live would reach the engine before these
    assert stream_ok(client.post("/translate/stream", json={"text": "Still. Here.", **EN_FR}))
    assert [texts for texts, _ in engine.calls[warmup:]] == [[SENTENCES[0]], ["Still."],
                                                             ["Here."]]


def test_split_texts_numbers_sentences_across_texts() -> None:
    layouts = [segment(text, language="en") for text in [" One.\nTwo.", "", "\n", "Three."]]
    assert split_texts(layouts) == [
        Sentence(0, 0, "One.", " ", "\n"), Sentence(1, 0, "Two."), Sentence(2, 1, ""),
        Sentence(3, 2, "", "\n"), Sentence(4, 3, "Three.")]


def test_api_error_is_raised_for_a_closed_batcher(client: TestClient,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    entry = client.app.state.service.registry.entries["en-fr"]  # type: ignore[attr-defined]

    def closed(*args: object, **kwargs: object) -> None:
        raise BatcherClosedError("closing")

    monkeypatch.setattr(entry.batcher, "submit_each", closed)
    response = client.post("/translate/stream", json={"text": TEXT, **EN_FR})
    assert error_of(response, 503)["code"] == "shutting_down"
