"""What one round trip costs a Python event loop in CPU: the floor under the service's CPU per call.

The service's profile (bench/RESULTS.md) puts most of its time in the I/O
machinery of asyncio, aiohttp and asyncpg, not in the calls' own code. This
measures that machinery alone, in one process shaped like the service, against
the same Asterisk and PostgreSQL: N ARI requests through the service's own
client (`POST /channels/{id}/ring` on a channel that does not exist: Asterisk
answers 404 without work), and N call-row updates through the call-row
writer's own `apply`, each with C in flight; and the same ARI request as a bare
HTTP/1.1 exchange on a kept-alive socket (a request line and three headers
written, a status line, headers and a Content-Length body read: no client
library), which is what the client adds measured against (the client
was aiohttp's until bridge/ari/http.py: 204 us against 34 then). It reports
this process's CPU per operation. Multiplied by what a call makes (`bench.masked_calls` prints the
ARI requests and events per call, and the row writes), it is the least a call
can cost with this design in CPython, before any of the call's own logic.

    .venv/bin/python -m bench.io_floor --operations 4000 --in-flight 50
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from bench.stack import bench_stack
from bridge.ari.client import AriClient, AriNotFound, basic_auth_header
from bridge.calls.spool import apply
from bridge.cli import loop_factory
from bridge.store import Store
from tests.support.stack import Stack


async def in_flight(count: int, width: int, one) -> float:
    """CPU seconds of this process for `count` calls of `one(i)`, `width` at a time."""
    queue = iter(range(count))

    async def worker():
        for i in queue:
            await one(i)

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(width)))
    return time.process_time() - started


async def ari_requests(stack: Stack, count: int, width: int) -> float:
    settings = stack.settings
    async with AriClient(settings.ari_url, settings.ari_user, settings.ari_password, settings.ari_app) as ari:
        async def ring(i: int) -> None:
            try:
                await ari.ring(f"io-floor-{i}")
            except AriNotFound:
                pass

        await in_flight(width, width, ring)  # connections opened before the clock starts
        return await in_flight(count, width, ring)


class _BareHttp(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection, one request at a time, nothing else."""

    def __init__(self) -> None:
        self.buffer, self.answer, self.transport = bytearray(), None, None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.answer is None or self.answer.done():
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        length = next((int(v) for k, _, v in (h.partition(":") for h in head[1:]) if k.lower() == "content-length"), 0)
        if len(self.buffer) >= end + 4 + length:
            body = bytes(self.buffer[end + 4:end + 4 + length])
            del self.buffer[:end + 4 + length]
            self.answer.set_result((int(head[0].split(" ", 2)[1]), body))

    async def request(self, method: str, path: str, host: str, auth: str) -> tuple[int, bytes]:
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n"
                             "Content-Length: 0\r\n\r\n".encode())
        return await self.answer


async def bare_http_requests(stack: Stack, count: int, width: int) -> float:
    settings = stack.settings
    auth = basic_auth_header(settings.ari_user, settings.ari_password)
    loop = asyncio.get_running_loop()
    connections = [(await loop.create_connection(_BareHttp, settings.ari_host, settings.ari_port))[1]
                   for _ in range(width)]
    free = list(connections)

    async def ring(i: int) -> None:
        connection = free.pop()
        try:
            status, body = await connection.request("POST", f"/ari/channels/io-floor-{i}/ring",
                                                    f"{settings.ari_host}:{settings.ari_port}", auth)
            json.loads(body) if body else None
        finally:
            free.append(connection)

    await in_flight(width, width, ring)
    try:
        return await in_flight(count, width, ring)
    finally:
        for connection in connections:
            connection.transport.close()


async def row_updates(stack: Stack, count: int, width: int) -> float:
    store = await Store.connect(stack.dsn, stack.keys)
    try:
        ids = [uuid.uuid4() for _ in range(width)]
        now = datetime.now(timezone.utc)
        for call_id in ids:
            await apply(store, call_id, "insert", {"virtual_number": "+6562009999",
                                                   "caller_channel_id": f"io-floor-{call_id}", "started_at": now})

        async def update(i: int) -> None:
            await apply(store, ids[i % width], "update", {"setup_ms": i, "ringing_at": datetime.now(timezone.utc)})

        await in_flight(width, width, update)
        return await in_flight(count, width, update)
    finally:
        await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--operations", type=int, default=4000)
    parser.add_argument("--in-flight", type=int, default=50)
    args = parser.parse_args()
    with bench_stack(Path(tempfile.mkdtemp(prefix="masking-io-floor-")), args.in_flight) as stack:
        for name, measure in (("ARI request (AriClient, 404)", ari_requests),
                              ("ARI request (bare HTTP/1.1, 404)", bare_http_requests),
                              ("call-row update (asyncpg)", row_updates)):
            with asyncio.Runner(loop_factory=loop_factory(stack.settings.event_loop)) as runner:  # the service's loop
                cpu = runner.run(measure(stack, args.operations, args.in_flight))
            print(f"{name}: {args.operations} with {args.in_flight} in flight, "
                  f"{cpu:.2f} CPU-s, {cpu / args.operations * 1e6:.0f} us per operation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
