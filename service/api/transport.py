"""One ``send()`` per response: writes made in one event-loop turn leave the process together.

uvicorn writes a response's status line and headers, then its body, as two socket writes. If
the process dies between them (SIGKILL, the OOM killer) a proxy has already read a header and
can neither retry the request elsewhere nor complete it: its client gets a truncated answer.
The window is not a few instructions wide: another thread (the decode loop) can hold the GIL
between the two writes for a whole switch interval. ``CoalescingTransport`` holds the writes
of one loop turn and sends them joined at the end of the turn, so a response either left
whole or not at all (responses below the socket buffer size, which ours are). Streaming
responses still go out chunk by chunk, one loop turn later.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol


class CoalescingTransport:
    """Wraps an ``asyncio.Transport``; everything but writing and closing is delegated."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``; the first write of a turn schedules the flush at its end."""
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Send what this turn wrote, in one write to the real transport."""
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        """Close after sending what is pending (as ``asyncio.Transport.close`` does)."""
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol (h11 or httptools, whichever it picks) over a
    ``CoalescingTransport``; pass it as ``uvicorn.Config(http=...)``."""

    def connection_made(self, transport: asyncio.Transport) -> None:
        coalescing = CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(coalescing)
