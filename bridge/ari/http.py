"""Kept-alive HTTP/1.1 connections to Asterisk's HTTP server, for ARI's REST calls.

Our own code rather than aiohttp's client for the one thing a call does a dozen
times: a small request and a small JSON answer. Measured on the service's loop
(`bench.io_floor`), aiohttp spends 204 us of CPU on such a request and a bare
exchange 34 us; a recorded call makes 12 of them. Asterisk's server
(main/http.c) answers every request with a Content-Length, and one request at
a time on a connection, so the protocol needed is small: what is here. The
events' websocket and recording downloads stay on aiohttp.

A connection is reused while it is idle for less than `idle_seconds` (below
Asterisk's `session_keep_alive`, 15 s by default, so that the server does not
close it under a request); one that closes before any byte of its answer came
is retried once on a fresh connection: the server closed it idle, unread.
"""
from __future__ import annotations

import asyncio
import re
import ssl
import time
from urllib.parse import urlsplit


class HttpUnavailable(Exception):
    """No answer: refused, timed out, closed, or not HTTP. `reason` names which."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Closed(Exception):
    """The connection closed; `answered` says whether any of the answer came."""

    def __init__(self, answered: bool):
        self.answered = answered


class _Connection(asyncio.Protocol):
    """One connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.answer: asyncio.Future | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self._head: tuple[int, int | None, bool] | None = None  # status, length, close after
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._stop_timer()
        if self.answer is not None and not self.answer.done():
            if self._head is not None and self._head[1] is None:  # a body that runs to the close
                self._done(bytes(self.buffer))
            else:
                self.answer.set_exception(_Closed(answered=bool(self.buffer) or self._head is not None))

    def send(self, request: bytes, deadline: float) -> asyncio.Future:
        """The answer to `request`, or HttpUnavailable("timeout") at `deadline`
        (the loop's time; a timer on the loop: cheaper than a timeout scope per request)."""
        self.buffer.clear()
        self._head = None
        loop = asyncio.get_running_loop()
        self.answer = loop.create_future()
        if self.closed:  # closed by the server before this was sent: nothing of it was read
            self.answer.set_exception(_Closed(answered=False))
            return self.answer
        self._timer = loop.call_at(deadline, self._expire)
        self.transport.write(request)
        return self.answer

    def _expire(self) -> None:
        self._timer = None
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(HttpUnavailable("timeout"))
            self.closed = True
            self.transport.close()  # an answer may still come: not reusable

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def data_received(self, data: bytes) -> None:
        if self.answer is None or self.answer.done():
            self.transport.close()  # nothing was asked: not a server we can follow
            return
        self.buffer += data
        if self._head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            try:
                self._head = _parse_head(bytes(self.buffer[:end]))
            except ValueError:
                self.answer.set_exception(HttpUnavailable("bad_response"))
                self.transport.close()
                return
            del self.buffer[:end + 4]
        length = self._head[1]
        if length is not None and len(self.buffer) >= length:
            self._done(bytes(self.buffer[:length]))

    def _done(self, body: bytes) -> None:
        status, _, close = self._head
        self._stop_timer()
        self.answer.set_result((status, body))
        self.idle_since = time.monotonic()
        if close:
            self.closed = True
            self.transport.close()


_STATUS = re.compile(rb"HTTP/1\.(\d) (\d{3})")
# A header's value, found in the head lowercased once (a dozen answers a call:
# splitting every header line cost more than the rest of the exchange).
_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:([^\r]*)")
_CHUNKED = re.compile(rb"\r\ntransfer-encoding[ \t]*:[^\r]*chunked")
_CLOSE = re.compile(rb"\r\nconnection[ \t]*:[ \t]*close[ \t]*(?=\r\n|$)")


def _parse_head(head: bytes) -> tuple[int, int | None, bool]:
    """(status, body length or None if it runs to the close, close after)."""
    status_line = _STATUS.match(head)
    if status_line is None:
        raise ValueError("not HTTP/1.x")
    status = int(status_line.group(2))
    head = head.lower()
    if _CHUNKED.search(head):
        raise ValueError("chunked answers are not expected from Asterisk")
    close = status_line.group(1) == b"0" or _CLOSE.search(head) is not None
    if status in (204, 304) or 100 <= status < 200:
        return status, 0, close
    lengths = _LENGTH.findall(head)
    if lengths:  # the last one, as a header read into a dict; anything but digits is no length
        value = lengths[-1].strip()
        if not value.isdigit():
            raise ValueError("bad Content-Length")
        return status, int(value), close
    return status, None, True


class HttpPool:
    """Requests to one server over at most `limit` kept-alive connections."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float = 5.0, limit: int = 100,
                 idle_seconds: float = 5.0):
        url = urlsplit(base_url)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if url.scheme == "https" else None
        self.prefix = url.path.rstrip("/")
        netloc = url.netloc.rpartition("@")[2]
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in {"Host": netloc, **headers}.items())
        self.timeout, self.idle_seconds = timeout, idle_seconds
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(limit)

    async def request(self, method: str, target: str, body: bytes | None = None,
                      content_type: str = "application/json") -> tuple[int, bytes]:
        """(status, body) of `method` on `target` (the path after the base URL, with its query)."""
        head = f"{method} {self.prefix}{target} HTTP/1.1\r\n{self._headers}"
        if body is not None:
            head += f"Content-Type: {content_type}\r\n"
        request = (head + f"Content-Length: {len(body or b'')}\r\n\r\n").encode("latin-1") + (body or b"")
        async with self._slots:
            deadline = asyncio.get_running_loop().time() + self.timeout  # for the whole request, retry included
            connection, reused = await self._connection(deadline)
            while True:  # at most twice: a fresh connection is not retried
                try:
                    return await self._exchange(connection, request, deadline)
                except _Closed as closed:
                    if not reused or closed.answered:
                        raise HttpUnavailable("server_disconnected") from None
                connection, reused = await self._connection(deadline, fresh=True)

    async def _exchange(self, connection: _Connection, request: bytes, deadline: float) -> tuple[int, bytes]:
        try:
            answer = await connection.send(request, deadline)
        except BaseException:
            connection.transport.close()  # an answer may still come: the connection is not reusable
            raise
        if not connection.closed:
            self._idle.append(connection)
        return answer

    async def _connection(self, deadline: float, fresh: bool = False) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self._idle and not fresh:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since < self.idle_seconds:
                return connection, True
            connection.transport.close()
        try:
            async with asyncio.timeout_at(deadline):
                _, connection = await asyncio.get_running_loop().create_connection(
                    _Connection, self.host, self.port, ssl=self.ssl)
        except TimeoutError:
            raise HttpUnavailable("timeout") from None
        except OSError as exc:
            raise HttpUnavailable(type(exc).__name__) from None
        return connection, False

    def close(self) -> None:
        for connection in self._idle:
            connection.transport.close()
        self._idle.clear()
