"""Benchmark: lookup-key rotation on a real PostgreSQL.

Fills --sessions live sessions (200 virtual numbers), then times the call
path's route lookup (`store.sessions.route_lookup`, --lookups of them, one at a
time) with one lookup key, with a second key added and nothing re-hashed
(each lookup matches two hashes), after `rehash` (rows under the new key), and
with the old key retired; and the rehash's rate. A database of its own, dropped
after; the key file is a copy in a temporary directory.

    .venv/bin/python -m bench.lookup_keys --sessions 20000 --lookups 2000
"""
from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from bridge.privacy.crypto import KeyRing
from bridge.store import Store
from bridge.store.rows import seal_participants
from tests.support.keys import shared_keys
from tests.support.stack import create_database, drop_database, migrate

NUMBERS = 200


async def fill(store: Store, sessions: int) -> list[tuple[str, str]]:
    """Sessions written in bulk as `create` writes them (sealed, hashed, labelled); returns (number, caller)."""
    keys, numbers = store.keys, [f"+656{n:07d}" for n in range(NUMBERS)]
    rows, participants, routes = [], [], []
    for i in range(sessions):
        session_id, number = uuid.uuid4(), numbers[i % NUMBERS]
        a, b = f"+659{i:07d}", f"+658{i:07d}"
        rows.append((session_id, number, *seal_participants(keys, session_id, a, b), keys.lookup_key_id))
        hash_a, hash_b = rows[-1][2], rows[-1][3]
        participants += [(session_id, "a", number, hash_a, keys.lookup_key_id),
                         (session_id, "b", number, hash_b, keys.lookup_key_id)]
        routes.append((number, a))
    async with store.pool.acquire() as conn:
        await conn.executemany("INSERT INTO virtual_numbers (number) VALUES ($1)", [(n,) for n in numbers])
        await conn.executemany(
            "INSERT INTO masking_sessions (id, virtual_number, participant_a_hash, participant_b_hash,"
            " participant_a_sealed, participant_b_sealed, key_id, lookup_key_id, record, expires_at, purpose)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, false, now() + interval '1 day', 'delivery_order')", rows)
        await conn.executemany("INSERT INTO session_participants (session_id, role, virtual_number, number_hash,"
                               " lookup_key_id) VALUES ($1, $2, $3, $4, $5)", participants)
        await conn.execute("ANALYZE")
    return routes


async def route_p50(store: Store, routes: list[tuple[str, str]], lookups: int) -> str:
    sample = random.Random(7).sample(routes, lookups)
    times = []
    for number, caller in sample:
        started = time.perf_counter()
        found = await store.sessions.route_lookup(number, caller)
        times.append(time.perf_counter() - started)
        assert len(found.sessions) == 1, "a route lookup missed its session"
    times.sort()
    return f"p50 {statistics.median(times) * 1000:.2f} ms, p95 {times[int(len(times) * 0.95)] * 1000:.2f} ms"


async def run(sessions: int, lookups: int, batch: int, dsn: str) -> None:
    path = Path(tempfile.mkdtemp(prefix="masking-bench-keys-")) / "keys.json"
    shared_keys().save(path)
    store = await Store.connect(dsn, KeyRing.load(path), timeout=60)
    try:
        routes = await fill(store, sessions)
        await route_p50(store, routes, min(lookups, 200))  # warm the pool's connections and prepared statements
        print(f"{sessions} sessions on {NUMBERS} numbers, {lookups} route lookups each:")
        print(f"  one lookup key:                  {await route_p50(store, routes, lookups)}")
        store.keys.lookup.add()
        store.keys.save()
        print(f"  two keys, nothing re-hashed:     {await route_p50(store, routes, lookups)}")
        started, moved, batches = time.monotonic(), 0, 0
        while done := await store.lookup_keys.rehash_batch(["l0"], batch):
            moved, batches = moved + done, batches + 1
        elapsed = time.monotonic() - started
        print(f"  rehash: {moved} rows (sessions and participants) in {batches} batches of {batch}:"
              f" {elapsed:.1f} s ({moved / elapsed:.0f} rows/s)")
        print(f"  two keys, all re-hashed:         {await route_p50(store, routes, lookups)}")
        store.keys.lookup.retire("l0")
        print(f"  old key retired (one key again): {await route_p50(store, routes, lookups)}")
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    name = f"masking_bench_lookup_{uuid.uuid4().hex[:6]}"
    asyncio.run(create_database(name))
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        migrate({"MASKING_DATABASE_URL": dsn})
        asyncio.run(run(args.sessions, args.lookups, args.batch, dsn))
    finally:
        asyncio.run(drop_database(name))


if __name__ == "__main__":
    main()
