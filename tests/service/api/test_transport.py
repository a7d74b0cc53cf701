"""A response's header and body leave in one write, even when the loop stalls between them."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from service.api.transport import CoalescingHTTPProtocol, CoalescingTransport

BODY = b'{"translations": []}'
STALL_S = 0.3


def stalling_app(stall: Callable[[], object]) -> ASGIApp:
    """An app that sends the header, blocks the loop in ``stall`` (as a thread holding the GIL
    would), then sends the body."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(BODY)).encode())]})
        stall()
        await send({"type": "http.response.body", "body": BODY})

    return app


@contextmanager
def serving(protocol: type, stall: Callable[[], object]) -> Iterator[int]:
    """uvicorn with ``protocol`` on a loopback port the system picks, in a thread."""
    config = uvicorn.Config(stalling_app(stall), host="127.0.0.1", port=0, http=protocol,
                            lifespan="off", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def first_read(port: int) -> bytes:
    """What one ``recv`` gets after a GET: everything the server had sent by then."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        return conn.recv(65536)


def test_header_and_body_arrive_together() -> None:
    with serving(CoalescingHTTPProtocol, lambda: time.sleep(STALL_S)) as port:
        reply = first_read(port)
    assert reply.startswith(b"HTTP/1.1 200")
    assert reply.endswith(BODY)


def test_plain_uvicorn_sends_the_header_alone() -> None:
    """The failure mode the coalescing removes: a header on the wire without its body (the
    app stalls until the client has read, so a slow client cannot hide it)."""
    read = threading.Event()
    with serving(AutoHTTPProtocol, lambda: read.wait(10)) as port:
        reply = first_read(port)
        read.set()
    assert reply.startswith(b"HTTP/1.1 200")
    assert BODY not in reply


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0


@pytest.mark.parametrize("close_at_once", [False, True])
def test_writes_of_one_turn_are_joined_and_close_flushes(close_at_once: bool) -> None:
    async def scenario() -> RecordingTransport:
        real = RecordingTransport()
        transport = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"head ")
        transport.write(b"body")
        assert real.writes == []
        assert transport.get_write_buffer_size() == 9
        if close_at_once:
            transport.close()
        await asyncio.sleep(0)
        transport.write(b"" if close_at_once else b"next")
        await asyncio.sleep(0)
        return real

    real = asyncio.run(scenario())
    expected = [b"head body"] if close_at_once else [b"head body", b"next"]
    assert real.writes == expected
    assert real.closed == close_at_once
