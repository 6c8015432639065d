"""What one round trip costs a Python event loop in CPU: the floor under the service's CPU per call.

The service's profile (bench/RESULTS.md) puts most of its time in the I/O
machinery of asyncio, aiohttp and asyncpg, not in the calls' own code. This
measures that machinery alone, in one process shaped like the service, against
the same Asterisk and PostgreSQL: N ARI requests through the service's own
client (`POST /channels/{id}/ring` on a channel that does not exist: Asterisk
answers 404 without work), and N call-row updates through the call-row
writer's own `apply`, each with C in flight. It reports this process's CPU per
operation. Multiplied by what a call makes (`bench.masked_calls` prints the
ARI requests and events per call, and the row writes), it is the least a call
can cost with this design in CPython, before any of the call's own logic.

    .venv/bin/python -m bench.io_floor --operations 4000 --in-flight 50
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from bench.stack import bench_stack
from bridge.ari.client import AriClient, AriNotFound
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
        for name, measure in (("ARI request (aiohttp, 404)", ari_requests), ("call-row update (asyncpg)", row_updates)):
            with asyncio.Runner(loop_factory=loop_factory(stack.settings.event_loop)) as runner:  # the service's loop
                cpu = runner.run(measure(stack, args.operations, args.in_flight))
            print(f"{name}: {args.operations} with {args.in_flight} in flight, "
                  f"{cpu:.2f} CPU-s, {cpu / args.operations * 1e6:.0f} us per operation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
