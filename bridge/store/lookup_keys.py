"""Rotating the lookup key (bridge/privacy/lookup.py) across every table that
holds a number's keyed hash: counting rows per lookup key, re-hashing them
under the active key in bounded batches, and saying when an old key may go.

Each such table has a `lookup_key_id` column naming the key its hash was made
with, and is registered below in one of three lists:

- `REHASHED`: the number can be recovered (it is sealed in the row, or in the
  row's session), so `rehash` moves its rows to the active key, a batch per
  transaction. State lives in the rows only: a batch that dies (`kill -9`)
  rolls back, a second run picks up where the first stopped, a finished one
  finds nothing to do. A key is retired only once no row here uses it.
- `EXPIRING`: the number is not recoverable and the rows matter only for a
  while (a caller's wrong PINs): a row moves to the active key when it is next
  touched; `rehash` deletes the ones past mattering. They also hold a retire.
- `KEPT`: the number is not recoverable and the rows are kept (request
  digests): they match under any key still in the file, retired or not; they
  hold only `forget` (deleting the key material), not `retire`.

Audit rows and subject requests hold hashes too, but may not be rewritten (the
audit trail is append-only) and carry no label: subject access and erasure
match them under every key still in the file (`KeyRing.kept_hashes`).
"""
from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from bridge.privacy.crypto import KeyRing, number_context
from bridge.privacy.lookup import LookupKeys
from bridge.store.db import Database

# A caller's wrong-PIN row not touched for this long (and not locked) may be dropped
# under an old key: its window is over and its lockout (at most a day) has ended.
PIN_FAILURES_STALE = "1 day"


@dataclass(frozen=True)
class SealedNumbers:
    """A table whose rows hold each number sealed beside its hash: for a column
    base name `c`, `c_sealed` (AES-GCM under the row's `key_column`, bound to
    `number_context(table, id, c)`) and `c_hash`. Re-hashed from the row itself."""

    table: str
    id_column: str
    columns: tuple[str, ...]
    key_column: str = "key_id"

    async def rehash_batch(self, conn: asyncpg.Connection, keys: KeyRing, lookup: LookupKeys, stale: list[str],
                           batch: int) -> int:
        sealed = ", ".join(f"{c}_sealed" for c in self.columns)
        rows = await conn.fetch(
            f"SELECT {self.id_column} AS id, {self.key_column} AS key_id, {sealed} FROM {self.table}"
            f" WHERE lookup_key_id = ANY($1) ORDER BY {self.id_column} LIMIT $2 FOR UPDATE SKIP LOCKED", stale, batch)
        sets = ", ".join(f"{c}_hash = ${i + 2}" for i, c in enumerate(self.columns))
        await conn.executemany(
            f"UPDATE {self.table} SET {sets}, lookup_key_id = ${len(self.columns) + 2} WHERE {self.id_column} = $1",
            [self._rehashed(keys, lookup, r) for r in rows])
        return len(rows)

    def _rehashed(self, keys: KeyRing, lookup: LookupKeys, row: asyncpg.Record) -> tuple:
        hashes = [self._hash(keys, lookup, row, c) for c in self.columns]
        # A row anonymised by a path that left its label: no hash, no key.
        return row["id"], *hashes, lookup.active if any(h is not None for h in hashes) else None

    def _hash(self, keys: KeyRing, lookup: LookupKeys, row: asyncpg.Record, column: str) -> bytes | None:
        blob = row[f"{column}_sealed"]
        if blob is None:
            return None
        number = keys.open_number(row["key_id"], blob, number_context(self.table, row["id"], column))
        return lookup.hash(number)


class SessionParticipants:
    """`session_participants`: one row per participant, the number sealed in its session."""

    table = "session_participants"

    async def rehash_batch(self, conn: asyncpg.Connection, keys: KeyRing, lookup: LookupKeys, stale: list[str],
                           batch: int) -> int:
        rows = await conn.fetch(
            "SELECT p.session_id, p.role, s.key_id, s.participant_a_sealed, s.participant_b_sealed"
            " FROM session_participants p JOIN masking_sessions s ON s.id = p.session_id"
            " WHERE p.lookup_key_id = ANY($1) AND s.participant_a_sealed IS NOT NULL"
            " ORDER BY p.session_id, p.role LIMIT $2 FOR UPDATE OF p SKIP LOCKED", stale, batch)

        def rehashed(r):
            column = f"participant_{r['role']}"
            number = keys.open_number(r["key_id"], r[f"{column}_sealed"],
                                      number_context("masking_sessions", r["session_id"], column))
            return r["session_id"], r["role"], lookup.hash(number), lookup.active

        await conn.executemany("UPDATE session_participants SET number_hash = $3, lookup_key_id = $4"
                               " WHERE session_id = $1 AND role = $2", [rehashed(r) for r in rows])
        return len(rows)


class PinFailureCallers:
    """`pin_failures` caller rows: moved to the active key when the caller next keys a
    PIN (bridge/store/pin_failures.py); `rehash` drops old-key rows past mattering."""

    table = "pin_failures"

    async def rehash_batch(self, conn: asyncpg.Connection, _keys: KeyRing, _lookup: LookupKeys, stale: list[str],
                           batch: int) -> int:
        done = await conn.execute(
            "DELETE FROM pin_failures WHERE ctid IN (SELECT ctid FROM pin_failures WHERE lookup_key_id = ANY($1)"
            " AND (locked_until IS NULL OR locked_until < now())"
            f" AND window_started < now() - interval '{PIN_FAILURES_STALE}' LIMIT $2 FOR UPDATE SKIP LOCKED)",
            stale, batch)
        return int(done.split()[-1])


# Register a new table holding a number's keyed hash in exactly one of these.
REHASHED = [SealedNumbers("masking_sessions", "id", ("participant_a", "participant_b")), SessionParticipants(),
            SealedNumbers("do_not_record", "id", ("number",)), SealedNumbers("subject_requests", "id", ("subject",))]
EXPIRING = [PinFailureCallers()]
KEPT = ["idempotency_keys"]
# Hashes no row labels and nothing re-hashes (see above): matched under every key in the file.
# subject_requests: its rows from before migration 0034; incident_subjects: a breach's scope, a snapshot.
UNLABELLED = ["audit_log", "subject_requests", "incident_subjects"]


async def rotation_pending(db: Database) -> bool:
    """Whether a re-hashed table still has rows under another key than the active one."""
    lookup = db.keys.lookups()
    if len(lookup.in_use) < 2:
        return False  # a retired key holds no re-hashed row (retire is refused until then)

    async def query(conn):
        for table in REHASHED:
            if await conn.fetchval(f"SELECT 1 FROM {table.table} WHERE lookup_key_id IS NOT NULL"
                                   " AND lookup_key_id <> $1 LIMIT 1", lookup.active):
                return True
        return False

    return await db.run(query)


class LookupKeyRows:
    """`store.lookup_keys`."""

    def __init__(self, db: Database):
        self.db = db

    async def counts(self) -> dict[str, dict[str, int]]:
        """{table: {lookup key id: rows}} for every registered table."""
        tables = [t.table for t in REHASHED + EXPIRING] + KEPT

        async def count(conn):
            found = {}
            for table in tables:
                rows = await conn.fetch(f"SELECT lookup_key_id, count(*) FROM {table}"
                                        " WHERE lookup_key_id IS NOT NULL GROUP BY lookup_key_id")
                found[table] = {r["lookup_key_id"]: r["count"] for r in rows}
            return found

        return await self.db.run(count, timeout=max(self.db.timeout, 60))

    async def rehash_batch(self, stale: list[str], batch: int = 500) -> int:
        """One transaction: up to `batch` rows of each registered table moved off
        the `stale` lookup keys (or dropped, if expiring); returns how many."""
        keys = self.db.keys
        lookup = keys.lookups()  # one reading of the key file for the whole batch
        if lookup.active in stale:
            raise ValueError("the active lookup key is not stale")

        async def run(conn):
            async with conn.transaction():
                return sum([await table.rehash_batch(conn, keys, lookup, stale, batch)
                            for table in REHASHED + EXPIRING])

        return await self.db.run(run, timeout=max(self.db.timeout, 60))

    async def holding(self, key_id: str) -> dict[str, int]:
        """Rows that keep `key_id` from being retired: {table: rows} (empty: it may go)."""
        counts = await self.counts()
        return {t.table: counts[t.table][key_id] for t in REHASHED + EXPIRING if counts[t.table].get(key_id)}
