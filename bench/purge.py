"""Benchmark: how long the retention purge takes over many ended sessions.

Makes a throwaway database, seeds --sessions closed sessions, each with an
answered call and a sealed recording, then times `store.retention.purge` (every period
0, batches of --batch) and a second purge that must find nothing.

    .venv/bin/python -m bench.purge --sessions 2000 --batch 500
"""
from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path

from bridge.clock import utcnow
from bridge.privacy.audit import Actor
from bridge.privacy.retention import Kind, RetentionPolicy
from bridge.sessions.models import SessionRequest
from bridge.store import Store
from tests.support.keys import shared_keys
from tests.support.recordings import store_recording
from tests.support.stack import ADMIN_DSN, create_database, drop_database, migrate


async def seed(store: Store, sessions: int, directory: Path) -> None:
    for n in range(sessions):
        number = f"+6569{n:06d}"
        await store.numbers.add(number)
        session, _ = await store.sessions.create(SessionRequest(f"+6599{n:06d}", f"+6589{n:06d}", 600, True,
                                                               "delivery_order"))
        call_id = uuid.uuid4()
        await store.calls.insert(call_id, number, f"chan-{call_id}", utcnow(), session_id=session.id,
                                disposition="answered", recorded=True, custom_field="order")
        await store_recording(store, call_id, directory, b"RIFF" + os.urandom(2000))
        await store.sessions.close(session.id)


async def main(sessions: int, batch: int) -> None:
    name = f"masking_bench_purge_{uuid.uuid4().hex[:6]}"
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    await create_database(name)
    try:
        await asyncio.to_thread(migrate, {"MASKING_DATABASE_URL": dsn})
        store = await Store.connect(dsn, shared_keys())
        try:
            with tempfile.TemporaryDirectory() as directory:
                await seed(store, sessions, Path(directory))
                policy = RetentionPolicy(0, 0, 0)
                started = time.perf_counter()
                report = await store.retention.purge(policy, batch, by=Actor("bench", "bench@localhost"))
                first = time.perf_counter() - started
                started = time.perf_counter()
                again = await store.retention.purge(policy, batch)
                second = time.perf_counter() - started
            print(f"purge of {sessions} sessions (batch {batch}): {first:.2f} s, "
                  f"{report.purged[Kind.SESSIONS]} sessions anonymised, "
                  f"{report.purged[Kind.RECORDINGS]} recordings shredded, "
                  f"{report.purged[Kind.CALL_DETAILS]} calls cleared "
                  f"({sessions / first:.0f} sessions/s); second purge: {again.total} rows, {second:.3f} s")
        finally:
            await store.close()
    finally:
        await drop_database(name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=500)
    options = parser.parse_args()
    asyncio.run(main(options.sessions, options.batch))
