"""``POST /translate/stream``: one sentence at a time, as server-sent events.

The request is checked, routed and split into sentences, and every sentence is queued with
``batcher.submit_each`` *before* the response starts, so limits, routing, a full queue and
shutdown are ordinary JSON error responses. Then the stream sends::

    event: start      {"model", "source_lang", "target_lang", "sentences"}
    event: sentence   one per sentence, in order (sentence i once sentences 0..i are done);
                      its ``source`` and ``text`` carry the separators around the sentence, so
                      a text's events concatenate to the text and to its translation
    event: done       {"model", ..., "translations", "sentences", "usage"}

or, when a sentence fails after the stream started (deadline, engine error, shutdown),
``event: error`` with ``{"status", "error": {"code", "message", ...}}`` instead of the rest.
Either ``done`` or ``error`` is the last event. A client that disconnects has its remaining
sentences cancelled (the batcher drops their requests).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import BaseModel
from starlette.responses import StreamingResponse

from inference.text import Segmented
from inference.translator import Translation
from service.api.batcher import BatcherClosedError
from service.api.errors import ApiError
from service.api.logs import request_id
from service.api.routing import Route
from service.api.schemas import (
    StreamDone,
    StreamError,
    StreamSentence,
    StreamStart,
    TranslateRequest,
    Usage,
)
from service.api.translation import (
    Options,
    TranslationService,
    batch_error,
    segment_texts,
    to_out,
    wait_disconnected,
)

log = logging.getLogger(__name__)
MEDIA_TYPE = "text/event-stream"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering


class EventStreamResponse(StreamingResponse):
    """A streaming response with the ``text/event-stream`` media type."""

    media_type = MEDIA_TYPE


@dataclass(frozen=True)
class Sentence:
    """One source sentence, where it came from and the separators sent around it (a text
    without sentences is one blank sentence whose ``before`` is the whole text)."""

    index: int
    text_index: int
    source: str
    before: str = ""
    after: str = ""


def split_texts(layouts: Sequence[Segmented]) -> list[Sentence]:
    """Every text's sentences, in order, from its layout (``translation.segment_texts``)."""
    sentences: list[Sentence] = []
    for text_index, layout in enumerate(layouts):
        if not layout.sentences:
            sentences.append(Sentence(len(sentences), text_index, "", before=layout.text))
        for number, source in enumerate(layout.sources):
            before, after = layout.edges(number)
            sentences.append(Sentence(len(sentences), text_index, source, before, after))
    return sentences


def sse(event: str, data: BaseModel, *, exclude_none: bool = False) -> str:
    """One event in the SSE wire format: ``event:`` and ``data:`` lines, then a blank line
    (the JSON is on one line)."""
    return f"event: {event}\ndata: {data.model_dump_json(exclude_none=exclude_none)}\n\n"


def error_event(err: ApiError) -> str:
    """``event: error`` for ``err``, stamped with the request id like an error response."""
    detail = err.detail.model_copy(update={"request_id": request_id.get()})
    return sse("error", StreamError(status=err.status, error=detail), exclude_none=True)


def submit(route: Route, sentences: list[Sentence], options: Options
           ) -> list[asyncio.Future[Translation]]:
    """One future per sentence: blank ones are done at once (``empty``, no model); the others
    are queued together (503 ``ApiError`` when the queue has no room for all, or closing)."""
    entry = route.entry
    assert entry.batcher is not None
    todo = [sentence.source for sentence in sentences if sentence.source]
    try:
        queued = entry.batcher.submit_each(todo, options.decode, timeout=options.timeout,
                                           pair=route.pair)
    except Exception as err:
        raise batch_error(err, entry.name, options.timeout) from None
    loop, pending = asyncio.get_running_loop(), iter(queued)
    futures = []
    for sentence in sentences:
        if sentence.source:
            futures.append(next(pending))
        else:
            blank: asyncio.Future[Translation] = loop.create_future()
            blank.set_result(Translation("", math.nan, "empty"))
            futures.append(blank)
    return futures


def release(futures: Sequence[asyncio.Future[Translation]]) -> int:
    """Cancel the futures still pending (the batcher drops their requests) and mark the
    failures of the others as seen; the number cancelled."""
    cancelled = 0
    for future in futures:
        if future.cancel():
            cancelled += 1
        elif not future.cancelled():
            future.exception()  # no "exception was never retrieved" for unsent failures
    return cancelled


def outcome(future: asyncio.Future[Translation]) -> Translation | Exception:
    """The result of a finished future, or its error (a cancelled one counts as shutdown)."""
    if future.cancelled():
        return BatcherClosedError("the work was cancelled")
    error = future.exception()
    if error is None:
        return future.result()
    return error if isinstance(error, Exception) else RuntimeError(str(error))


class Stream:
    """The events of one request, from its queued futures."""

    def __init__(self, route: Route, options: Options, texts: int,
                 sentences: list[Sentence], futures: list[asyncio.Future[Translation]]) -> None:
        self.entry = route.entry
        self.options = options
        self.texts = texts
        self.sentences = sentences
        self.futures = futures
        self.source_lang, self.target_lang = route.pair
        self.results: list[Translation] = []

    async def events(self, request: Request) -> AsyncIterator[str]:
        """``start``, one ``sentence`` per sentence, then ``done`` or ``error``; stops early
        (cancelling what is left) when the client disconnects."""
        watcher = asyncio.ensure_future(wait_disconnected(request))
        try:
            yield sse("start", StreamStart(model=self.entry.name, source_lang=self.source_lang,
                                           target_lang=self.target_lang,
                                           sentences=len(self.sentences)))
            for sentence, future in zip(self.sentences, self.futures, strict=True):
                waiting: set[asyncio.Future[Any]] = {future, watcher}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if not future.done():
                    self._gone()
                    return
                result = outcome(future)
                if isinstance(result, Exception):
                    yield error_event(batch_error(result, self.entry.name,
                                                  self.options.timeout))
                    return
                self.results.append(result)
                yield sse("sentence", self.sentence_event(sentence, result))
            yield sse("done", self.done_event())
        finally:
            watcher.cancel()
            release(self.futures)

    def _gone(self) -> None:
        cancelled = release(self.futures)
        log.info("stream client disconnected", extra={"fields": {
            "model": self.entry.name, "sent": len(self.results), "cancelled": cancelled}})

    def sentence_event(self, sentence: Sentence, result: Translation) -> StreamSentence:
        """The ``sentence`` event's data."""
        out = to_out(result, self.options.return_scores)
        def around(text: str) -> str:
            return sentence.before + text + sentence.after

        out.text = around(out.text)
        for alternative in out.alternatives:
            alternative.text = around(alternative.text)
        return StreamSentence(**out.model_dump(), index=sentence.index,
                              text_index=sentence.text_index, source=around(sentence.source))

    def done_event(self) -> StreamDone:
        """The ``done`` event's data: per input text the concatenation of its ``sentence``
        events' texts, usage."""
        per_text: list[list[str]] = [[] for _ in range(self.texts)]
        for sentence, result in zip(self.sentences, self.results, strict=True):
            per_text[sentence.text_index] += [sentence.before, result.text, sentence.after]
        usage = Usage(texts=self.texts,
                      source_tokens=sum(r.source_tokens for r in self.results),
                      target_tokens=sum(r.target_tokens for r in self.results))
        return StreamDone(model=self.entry.name, source_lang=self.source_lang,
                          target_lang=self.target_lang, sentences=len(self.results),
                          translations=["".join(pieces) for pieces in per_text],
                          usage=usage)


def check_sentences(sentences: list[Sentence], capacity: int) -> None:
    """422 when the text has more sentences than a model's whole queue could ever hold (each
    sentence is one queued item), rather than a 503 that retrying cannot fix."""
    count = sum(1 for sentence in sentences if sentence.source)
    if count > capacity:
        raise ApiError(422, "too_many_sentences", f"{count} sentences in one request; the "
                       f"limit is {capacity} (the queue size)", field="text", limit=capacity)


async def open_stream(service: TranslationService, body: TranslateRequest,
                      request: Request) -> EventStreamResponse:
    """Check, route, split and queue the request (errors are JSON responses), then stream."""
    if body.format != "text":
        raise ApiError(400, "unsupported_format", f"format {body.format!r} cannot be streamed "
                       "sentence by sentence; send it to /translate", field="format")
    texts, route, options = service.prepare(body)
    sentences = split_texts(await asyncio.to_thread(segment_texts, route.source, texts))
    check_sentences(sentences, service.settings.queue_size)
    stream = Stream(route, options, len(texts), sentences, submit(route, sentences, options))
    return EventStreamResponse(stream.events(request), headers=HEADERS)
