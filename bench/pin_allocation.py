"""Benchmark: sessions on shared (pin_mode) numbers, on a real PostgreSQL.

Creates --sessions sessions, --concurrency at a time, all with one driver
(so every create contends for the same participant lock, the worst case) on
--numbers shared numbers, checks every (number, PIN) pair is distinct, and
times the call path's PIN lookup. Uses a database of its own, dropped after.

    .venv/bin/python -m bench.pin_allocation --sessions 2000 --numbers 2 --concurrency 8
"""
from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from bridge.sessions.models import SessionRequest
from bridge.store import Store
from tests.support.keys import shared_keys
from tests.support.stack import create_database, drop_database, migrate


async def run(sessions: int, numbers: int, concurrency: int, dsn: str) -> None:
    store = await Store.connect(dsn, shared_keys(), timeout=10)
    try:
        pool = [f"+65600090{n:02d}" for n in range(numbers)]
        for number in pool:
            await store.numbers.add(number, pin_mode=True)
        gate = asyncio.Semaphore(concurrency)

        async def create(i: int):
            async with gate:
                session, _ = await store.sessions.create(SessionRequest(
                    f"+6593{i:06d}", "+6583000001", ttl_seconds=3600, record=False, purpose="delivery_order",
                    pin_mode=True))
                return session

        started = time.monotonic()
        created = await asyncio.gather(*(create(i) for i in range(sessions)))
        elapsed = time.monotonic() - started
        pairs = {(s.virtual_number, s.pin) for s in created}
        per_number = {n: sum(1 for s in created if s.virtual_number == n) for n in pool}
        print(f"{sessions} sessions, {concurrency} at a time: {elapsed:.1f} s ({sessions / elapsed:.0f}/s);"
              f" per number {per_number}; distinct (number, PIN): {len(pairs) == sessions}")
        started = time.monotonic()
        for s in created[:500]:
            await store.pins.lookup(s.virtual_number, s.pin)
        print(f"pin_lookup: {(time.monotonic() - started) / min(500, sessions) * 1000:.2f} ms each")
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--numbers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    name = f"masking_bench_pin_{uuid.uuid4().hex[:6]}"
    asyncio.run(create_database(name))
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        migrate({"MASKING_DATABASE_URL": dsn})
        asyncio.run(run(args.sessions, args.numbers, args.concurrency, dsn))
    finally:
        asyncio.run(drop_database(name))


if __name__ == "__main__":
    main()
