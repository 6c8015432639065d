"""The audit trail's SQL (`audit_log`): appending a chained row, reading the chain back.

Rows are keyed with the key ring's active audit key (bridge/privacy/audit.py);
a ring without one cannot append (AuditKeyMissing), so no unkeyed row follows
a keyed one. The application role may only INSERT and SELECT here (grants
and a trigger, migration 0019).

Appends take a transaction-scoped advisory lock, so seq numbers and links are
allocated one writer at a time (callers run READ COMMITTED, so the row read
under the lock is the newest committed one). With a caller's connection the
row commits, or not, with the caller's own change; the lock is then held to
its commit, so audit last in such a transaction.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, AsyncIterator

import asyncpg

from bridge.privacy.audit import GENESIS, Actor, AuditEntry, sealed
from bridge.store.db import Database

AUDIT_LOCK = 0x61756474  # 'audt'
INSERT = ("INSERT INTO audit_log (seq, at, actor, action, target_type, target_id, session_id,"
          " subject_hash, source, reason, details, prev_hash, hash, key_id)"
          " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14)")


@dataclass(frozen=True)
class NewRow:
    """A row to append: who did what to which data; its seq, time and hashes are the trail's to give."""
    actor: str
    action: str
    target_type: str
    target_id: str
    source: str
    reason: str | None = None
    session_id: uuid.UUID | None = None
    subject_hash: bytes | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def by(cls, actor: Actor, action: str, target_type: str, target_id: str, **fields: Any) -> "NewRow":
        return cls(actor.name, action, target_type, target_id, actor.source, actor.reason, **fields)


class AuditTrail:
    """`store.audit`: the rows that say who did what to which personal data."""

    def __init__(self, db: Database):
        self.db = db

    async def append(self, actor: str, action: str, target_type: str, target_id: str, *, source: str,
                     reason: str | None = None, session_id: uuid.UUID | None = None,
                     subject_hash: bytes | None = None, details: dict[str, Any] | None = None,
                     conn: asyncpg.Connection | None = None) -> AuditEntry:
        """Append a row: in its own transaction, or in the caller's `conn`'s."""
        row = NewRow(actor, action, target_type, target_id, source, reason, session_id, subject_hash,
                     details or {})
        return (await self.append_rows([row], conn))[0]

    async def append_rows(self, rows: list[NewRow], conn: asyncpg.Connection | None = None) -> list[AuditEntry]:
        """Append `rows` in order, chained one after another under one lock and
        one reading of the head: in their own transaction, or in the caller's
        `conn`'s. What a batch saves is round trips (a delivered webhook's row
        was five of a delivery's six statements), not rows: each is sealed as
        if appended alone, and they share the database's clock reading."""
        if not rows:
            return []
        keys = self.db.keys
        key_id = keys.active_audit_id  # before any SQL: without an audit key nothing is written

        async def write(conn: asyncpg.Connection) -> list[AuditEntry]:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", AUDIT_LOCK)
            # The database's clock, so `at` grows with seq whoever writes; details as jsonb
            # give them back, so the hash seals exactly what is stored.
            head = await conn.fetchrow(
                "SELECT clock_timestamp() AS at, $1::jsonb[] AS details, last.seq, last.hash"
                " FROM (SELECT 1) AS one LEFT JOIN LATERAL"
                " (SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1) AS last ON true",
                [json.dumps(row.details) for row in rows])
            seq, prev_hash = head["seq"] or 0, head["hash"] or GENESIS
            entries, values = [], []
            for row, details in zip(rows, head["details"], strict=True):
                seq += 1
                entry = sealed(AuditEntry(
                    seq=seq, at=head["at"], actor=row.actor, action=row.action, target_type=row.target_type,
                    target_id=row.target_id, source=row.source, session_id=row.session_id,
                    subject_hash=row.subject_hash, reason=row.reason, details=json.loads(details),
                    key_id=key_id), prev_hash, keys.audit_mac)
                prev_hash = entry.hash
                entries.append(entry)
                values.append((entry.seq, entry.at, row.actor, row.action, row.target_type, row.target_id,
                               row.session_id, row.subject_hash, row.source, row.reason, details,
                               entry.prev_hash, entry.hash, key_id))
            if len(values) == 1:
                await conn.execute(INSERT, *values[0])
            else:
                await conn.executemany(INSERT, values)  # pipelined: one round trip
            return entries

        async def append(conn: asyncpg.Connection) -> list[AuditEntry]:
            if conn.is_in_transaction():
                # The caller's transaction: the rows and the lock go with its commit.
                # A transaction of our own inside it would be a savepoint, two
                # round trips more for each webhook delivered, each number added.
                return await write(conn)
            async with conn.transaction():
                return await write(conn)

        return await (append(conn) if conn is not None else self.db.run(append))

    async def append_by(self, by: Actor, action: str, target_type: str, target_id: str,
                        conn: asyncpg.Connection | None = None, **fields: Any) -> AuditEntry:
        """`append` on behalf of `by` (its name, source and reason)."""
        return await self.append(by.name, action, target_type, target_id, source=by.source, reason=by.reason,
                                 conn=conn, **fields)

    async def rows(self, after_seq: int = 0, limit: int = 1000) -> list[AuditEntry]:
        """Rows after `after_seq`, oldest first."""
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2", after_seq, limit))
        return [entry_from_row(r) for r in rows]

    async def entry(self, seq: int) -> AuditEntry | None:
        row = await self.db.run(lambda conn: conn.fetchrow("SELECT * FROM audit_log WHERE seq = $1", seq))
        return None if row is None else entry_from_row(row)

    async def walk(self, page: int = 1000, after: int = -2 ** 63) -> AsyncIterator[AuditEntry]:
        """Every row after seq `after`, oldest first, a page at a time (by default
        all, so a row out of range still shows)."""
        while rows := await self.rows(after, page):
            for row in rows:
                yield row
            after = rows[-1].seq

    async def head(self) -> tuple[int, bytes]:
        """The newest row's (seq, hash); (0, GENESIS) for an empty trail."""
        row = await self.db.run(lambda conn: conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"))
        return (row["seq"], row["hash"]) if row else (0, GENESIS)

    async def hash_at(self, seq: int) -> bytes | None:
        """The hash of row `seq`, None if there is no such row."""
        return await self.db.run(lambda conn: conn.fetchval("SELECT hash FROM audit_log WHERE seq = $1", seq))

    async def rows_by_key(self) -> dict[str | None, int]:
        """Rows per audit key id (None: rows from before the keyed chain)."""
        rows = await self.db.run(lambda conn: conn.fetch("SELECT key_id, count(*) FROM audit_log GROUP BY key_id"))
        return {r["key_id"]: r["count"] for r in rows}

    async def list(self, action: str | None = None, session_id: uuid.UUID | None = None,
                   subject_hash: bytes | list[bytes] | None = None, since: datetime | None = None,
                   target_id: str | None = None, limit: int = 50, actor: str | None = None,
                   until: datetime | None = None, subject_sessions: bool = False) -> list[AuditEntry]:
        """Rows matching every filter given, newest first. `actor` matches the name
        or a prefix of its `:` parts (`apikey:<prefix>`); `since` is inclusive,
        `until` exclusive. With `subject_sessions`, `subject_hash` also matches the
        rows about a whole session the number took part in (a webhook, a recording).
        A list of hashes: the number under each lookup key (a rotation leaves older rows)."""
        hashes = [subject_hash] if isinstance(subject_hash, bytes) else subject_hash
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT * FROM audit_log WHERE ($1::text IS NULL OR action = $1) AND ($2::uuid IS NULL OR session_id = $2)"
            " AND ($3::bytea[] IS NULL OR subject_hash = ANY($3) OR ($8 AND subject_hash IS NULL AND session_id IN"
            "  (SELECT session_id FROM session_participants WHERE number_hash = ANY($3))))"
            " AND ($4::timestamptz IS NULL OR at >= $4) AND ($5::text IS NULL OR target_id = $5)"
            " AND ($7::text IS NULL OR actor = $7 OR left(actor, length($7) + 1) = $7 || ':')"
            " AND ($9::timestamptz IS NULL OR at < $9)"
            " ORDER BY seq DESC LIMIT $6",
            action, session_id, hashes, since, target_id, limit, actor, subject_sessions, until))
        return [entry_from_row(r) for r in rows]


def entry_from_row(row: asyncpg.Record) -> AuditEntry:
    return AuditEntry(
        seq=row["seq"], at=row["at"], actor=row["actor"], action=row["action"], target_type=row["target_type"],
        target_id=row["target_id"], source=row["source"], session_id=row["session_id"],
        subject_hash=row["subject_hash"], reason=row["reason"], details=json.loads(row["details"]),
        prev_hash=row["prev_hash"], hash=row["hash"], key_id=row["key_id"])
