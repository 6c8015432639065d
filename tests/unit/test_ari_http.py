"""The ARI client's own HTTP/1.1 connections (bridge/ari/http.py), against
raw servers that behave as Asterisk's does and as it might misbehave."""
from __future__ import annotations

import asyncio

import pytest

from bridge.ari.client import AriClient, AriNotFound, AriUnreachable
from bridge.ari.http import HttpPool, HttpUnavailable


class RawServer:
    """Reads requests head by head and answers each with `answer(request_head, body)`
    (bytes to write; None to close without answering; (bytes, "close") to write,
    then close); counts connections."""

    def __init__(self, answer):
        self.answer, self.connections, self.requests = answer, 0, []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                length = next((int(line.split(":")[1]) for line in head.split("\r\n")
                               if line.lower().startswith("content-length")), 0)
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                out = self.answer(head, body)
                if out is None:
                    break
                close = isinstance(out, tuple)
                writer.write(out[0] if close else out)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


def ok(body: bytes = b'{"id": "x"}', extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def run(coro):
    return asyncio.run(coro)


def test_requests_share_one_kept_alive_connection_and_say_who_they_are():
    async def scenario():
        async with RawServer(lambda head, body: ok()) as server:
            pool = HttpPool(f"http://127.0.0.1:{server.port}/ari", {"Authorization": "Basic dTpw"})
            for _ in range(5):
                assert await pool.request("POST", "/channels/c1/answer") == (200, b'{"id": "x"}')
            pool.close()
        assert server.connections == 1
        head = server.requests[0][0]
        assert head.startswith("POST /ari/channels/c1/answer HTTP/1.1\r\n")
        assert "Authorization: Basic dTpw\r\n" in head and f"Host: 127.0.0.1:{server.port}\r\n" in head
    run(scenario())


def test_an_answer_split_anywhere_is_put_back_together():
    class Slow(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            async def dribble():
                for byte in ok(b'{"a": [1, 2, 3]}', "X-Other: y\r\n"):
                    self.transport.write(bytes([byte]))
                    await asyncio.sleep(0)
            asyncio.ensure_future(dribble())

    async def scenario():
        server = await asyncio.get_running_loop().create_server(Slow, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = HttpPool(f"http://127.0.0.1:{port}", {})
        assert await pool.request("GET", "/x") == (200, b'{"a": [1, 2, 3]}')
        pool.close()
        server.close()
    run(scenario())


def test_a_connection_the_server_closed_while_idle_is_replaced_and_the_request_sent_once():
    async def scenario():
        async with RawServer(lambda head, body: ok(extra="Connection: close\r\n")) as server:
            pool = HttpPool(f"http://127.0.0.1:{server.port}", {})
            await pool.request("POST", "/a")
            await pool.request("POST", "/b")
            pool.close()
        assert server.connections == 2 and len(server.requests) == 2
    run(scenario())


def test_a_reused_connection_closed_unanswered_is_retried_once_on_a_fresh_one():
    state = {"served": 0}

    def answer(head, body):
        state["served"] += 1
        return ok() if state["served"] != 2 else None  # the second request: closed unanswered (idle close)

    async def scenario():
        async with RawServer(answer) as server:
            pool = HttpPool(f"http://127.0.0.1:{server.port}", {})
            await pool.request("GET", "/a")
            assert await pool.request("GET", "/b") == (200, b'{"id": "x"}')
            pool.close()
        assert server.connections == 2
    run(scenario())


def test_a_fresh_connection_closed_unanswered_is_an_error_not_a_loop():
    async def scenario():
        async with RawServer(lambda head, body: None) as server:
            pool = HttpPool(f"http://127.0.0.1:{server.port}", {})
            with pytest.raises(HttpUnavailable, match="server_disconnected"):
                await pool.request("POST", "/a")
        assert server.connections == 1
    run(scenario())


def test_half_an_answer_then_a_close_is_not_retried():
    """The server read that request: sending it again could do it twice."""
    half = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"par"

    async def scenario():
        async with RawServer(lambda head, body: ok() if "/first" in head else (half, "close")) as server:
            pool = HttpPool(f"http://127.0.0.1:{server.port}", {})
            await pool.request("GET", "/first")
            with pytest.raises(HttpUnavailable, match="server_disconnected"):
                await pool.request("POST", "/second")  # on the reused connection
        assert len(server.requests) == 2
    run(scenario())


def test_not_http_and_silence_are_precise_errors():
    async def scenario():
        async with RawServer(lambda head, body: b"SSH-2.0-OpenSSH\r\n\r\n") as server:
            with pytest.raises(HttpUnavailable, match="bad_response"):
                await HttpPool(f"http://127.0.0.1:{server.port}", {}).request("GET", "/a")
        async with RawServer(lambda head, body: b"") as server:
            with pytest.raises(HttpUnavailable, match="timeout"):
                await HttpPool(f"http://127.0.0.1:{server.port}", {}, timeout=0.3).request("GET", "/a")
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        with pytest.raises(HttpUnavailable, match="ConnectionRefusedError"):
            await HttpPool(f"http://127.0.0.1:{port}", {}).request("GET", "/a")
    run(scenario())


def test_a_cancelled_request_does_not_leave_its_answer_for_the_next_one():
    def answer(head, body):
        if "/slow" in head:
            return None  # never answers; the connection is dropped by the client
        return ok(b'{"who": "fast"}')

    async def scenario():
        async with RawServer(answer) as server:
            pool = HttpPool(f"http://127.0.0.1:{server.port}", {})
            slow = asyncio.ensure_future(pool.request("GET", "/slow"))
            await asyncio.sleep(0.1)
            slow.cancel()
            assert await pool.request("GET", "/fast") == (200, b'{"who": "fast"}')
            pool.close()
    run(scenario())


def test_the_client_sends_query_and_json_and_maps_statuses_to_its_errors():
    def answer(head, body):
        if head.startswith("PUT"):
            return b"HTTP/1.1 204 No Content\r\n\r\n"
        if "/gone" in head:
            body = b'{"message": "Channel not found"}'
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        return ok(b"[]")

    async def scenario():
        async with RawServer(answer) as server:
            async with AriClient(f"http://127.0.0.1:{server.port}", "u", "p", "masking") as ari:
                await ari.play("c1", ["sound:beep", "tone:ring"], "p1")
                await ari.filter_events(["StasisStart"])
                with pytest.raises(AriNotFound, match="Channel not found"):
                    await ari.answer("gone")
            head, body = server.requests[1]
            assert head.startswith("PUT /ari/applications/masking/eventFilter HTTP/1.1")
            assert body == b'{"allowed": [{"type": "StasisStart"}]}'
            first = server.requests[0][0].split("\r\n")[0]
            assert first == "POST /ari/channels/c1/play?media=sound:beep,tone:ring&playbackId=p1 HTTP/1.1"
        with pytest.raises(AriUnreachable, match="unreachable: ConnectionRefusedError"):
            await ari.answer("c1")
    run(scenario())


def test_a_request_that_timed_out_gives_its_connection_up_and_leaves_no_timer_behind():
    """The deadline is a timer on the answer: once it fires the connection is
    not reused (its late answer would be taken for the next request's); once
    an answer comes, no timer is left armed on the loop."""
    def answer(head, body):
        return b"" if "/slow" in head else ok()

    async def scenario():
        async with RawServer(answer) as server:
            pool = HttpPool(f"http://127.0.0.1:{server.port}", {}, timeout=0.3)
            with pytest.raises(HttpUnavailable, match="timeout"):
                await pool.request("GET", "/slow")
            assert await pool.request("GET", "/fast") == (200, b'{"id": "x"}')
            assert server.connections == 2
            loop = asyncio.get_running_loop()
            assert not [h for h in loop._scheduled if not h.cancelled()]
            pool.close()
    run(scenario())


def test_a_content_length_that_is_not_a_number_is_a_bad_response_at_once():
    """Not a body that runs to the close: on a kept-alive connection that
    would wait for the deadline and say `timeout`."""
    async def scenario():
        for length in ("5, 5", "+5", "five", ""):
            async with RawServer(lambda head, body: f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\nhello"
                                 .encode()) as server:
                with pytest.raises(HttpUnavailable, match="bad_response"):
                    await HttpPool(f"http://127.0.0.1:{server.port}", {}, timeout=30).request("GET", "/a")
    run(scenario())
