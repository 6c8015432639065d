"""What a webhook event costs the service, counted: the sender in this process
against a real PostgreSQL and a receiver on loopback, no Asterisk.

Calls are simulated as the call path writes their events: each "call" a
session whose `call.ringing`, `call.answered` and `call.completed` are written
0.5 s and 2 s apart through `store.outbox.enqueue` (the service's own events,
its connections quiet: `outbox_notify=False`), calls starting at `--rate` a
second. The receiver keeps connections alive and answers 204; it runs in
this process's event loop, so a batch's answers can arrive in one turn of the
loop, which a business's server does not do: what depends on answers
arriving together (a group commit did) is measured against the real service
(`bench.masked_calls --webhook`) instead. Reported, per
event delivered: claim queries, mark transactions, SQL statements (asyncpg's
executes; an `executemany` counts once, it is one pipelined round trip), this
process's CPU (writes, sending and the receiver together: compare runs, not
absolutes), and write-to-receipt p50/p95. Counts do not move with the VM; CPU
does, so compare commits alternately.

    .venv/bin/python -m bench.webhooks --calls 300 --rate 10
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import asyncpg
from aiohttp import web

from bridge.cli import loop_factory
from bridge.outbound.policy import OutboundPolicy
from bridge.sessions.models import SessionRequest
from bridge.store import Store
from bridge.store.outbox import Outbox
from bridge.webhooks import Dispatcher
from tests.support.keys import keys_file, shared_keys
from tests.support.ports import free_port
from tests.support.stack import create_database, drop_database, migrate

EVENTS = (("call.ringing", 0.0), ("call.answered", 0.5), ("call.completed", 2.0))


class Counts:
    """asyncpg statements, claims and mark transactions, counted by wrapping the methods."""

    def __init__(self) -> None:
        self.statements = self.claims = self.marks = 0
        execute, executemany = asyncpg.connection.Connection._do_execute, asyncpg.connection.Connection.executemany
        due, delivered = Outbox.due, Outbox.delivered
        counts = self

        async def counted_execute(self, *args, **kwargs):
            counts.statements += 1
            return await execute(self, *args, **kwargs)

        async def counted_executemany(self, *args, **kwargs):
            counts.statements += 1
            return await executemany(self, *args, **kwargs)

        async def counted_due(self, *args, **kwargs):
            counts.claims += 1
            return await due(self, *args, **kwargs)

        async def counted_delivered(self, *args, **kwargs):
            counts.marks += 1
            return await delivered(self, *args, **kwargs)

        asyncpg.connection.Connection._do_execute = counted_execute
        asyncpg.connection.Connection.executemany = counted_executemany
        Outbox.due, Outbox.delivered = counted_due, counted_delivered

    def snapshot(self) -> tuple[int, int, int]:
        return self.statements, self.claims, self.marks


async def run(dsn: str, calls: int, rate: float) -> None:
    received: dict[str, float] = {}

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        received[request.headers["X-Masking-Event-Id"]] = time.monotonic()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/hook"

    store = await Store.connect(dsn, shared_keys(), outbox_notify=False)  # as the service connects
    sessions = []
    for n in range(calls):
        await store.numbers.add(f"+656100{n:04d}")
        session, _ = await store.sessions.create(SessionRequest(
            f"+659100{n:04d}", f"+658100{n:04d}", ttl_seconds=3600, record=False, purpose="delivery_order",
            webhook_url=url))
        sessions.append(session.id)

    counts = Counts()
    dispatcher = Dispatcher(store, "bench-secret", max_attempts=3,
                            policy=OutboundPolicy.parse("127.0.0.1", development=True))
    sender = asyncio.create_task(dispatcher.run())
    await asyncio.sleep(1.0)  # listening, first look done
    written: dict[str, float] = {}

    async def call(session_id: uuid.UUID) -> None:
        start = time.monotonic()
        for event_type, at in EVENTS:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            event_id = uuid.uuid4()
            written[str(event_id)] = time.monotonic()
            await store.outbox.enqueue(event_type, session_id, url, {"call_id": str(uuid.uuid4())}, event_id)

    before, cpu, started = counts.snapshot(), time.process_time(), time.monotonic()
    tasks = []
    for n, session_id in enumerate(sessions):
        await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        tasks.append(asyncio.create_task(call(session_id)))
    await asyncio.gather(*tasks)
    deadline = time.monotonic() + 30
    while len(received) < len(written) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    cpu = time.process_time() - cpu
    after = counts.snapshot()
    sender.cancel()
    await asyncio.gather(sender, return_exceptions=True)
    await runner.cleanup()
    await store.close()

    events = len(received)
    statements, claims, marks = (b - a for a, b in zip(before, after))
    latencies = sorted(received[e] - written[e] for e in received if e in written)
    print(f"events: {events}/{len(written)} received, {calls} calls at {rate}/s")
    print(f"per event: {claims / events:.2f} claims, {marks / events:.2f} mark transactions,"
          f" {statements / events:.2f} statements (writes included: 1 each)")
    print(f"cpu: {cpu:.2f} s in this process, {1000 * cpu / events:.2f} ms per event (writes, sender, receiver)")
    print(f"write -> receipt: p50 {1000 * statistics.median(latencies):.0f} ms,"
          f" p95 {1000 * latencies[int(0.95 * (len(latencies) - 1))]:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rate", type=float, default=10.0, help="calls started per second")
    args = parser.parse_args()
    name = f"masking_bench_hooks_{uuid.uuid4().hex[:8]}"
    asyncio.run(create_database(name))
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        migrate({"MASKING_DATABASE_URL": dsn, "MASKING_KEYS_FILE": str(keys_file())})
        with asyncio.Runner(loop_factory=loop_factory("uvloop")) as runner:
            runner.run(run(dsn, args.calls, args.rate))
    finally:
        asyncio.run(drop_database(name))


if __name__ == "__main__":
    main()
