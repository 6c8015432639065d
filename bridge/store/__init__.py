"""PostgreSQL: the pool, migrations and every query the bridge runs.

Every call-path query is bounded by `timeout`; a database that is down or slow
surfaces as `StoreUnavailable`, which the call flow turns into a prompt.
"""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Any

import asyncpg

from bridge.sessions.models import MaskingSession, RouteLookup

MIGRATION_LOCK = 0x6D61736B  # 'mask': serialises concurrent `db upgrade`


class StoreError(Exception):
    """Base of every error the store raises on purpose."""


class StoreUnavailable(StoreError):
    """The database could not be reached or did not answer in time."""


class NumberAlreadyInPool(StoreError):
    pass


class PoolExhausted(StoreError):
    """No virtual number is free for both participants."""

    def __init__(self, free_numbers: int, total_numbers: int):
        super().__init__(
            f"no virtual number is free for these participants "
            f"({free_numbers} of {total_numbers} numbers free)"
        )
        self.free_numbers = free_numbers
        self.total_numbers = total_numbers


_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)

# Columns a call row may be updated with as the call progresses.
CALL_COLUMNS = frozenset({
    "session_id", "direction", "callee_channel_id", "ringing_at", "answered_at", "ended_at",
    "disposition", "reject_reason", "dial_status", "caller_hangup_cause", "callee_hangup_cause",
    "hangup_by", "setup_ms", "talk_seconds", "recorded",
})


@dataclass(frozen=True)
class RecordingRow:
    id: uuid.UUID
    call_id: uuid.UUID
    storage_path: str
    format: str
    bytes: int
    duration_seconds: float
    sha256: str


def migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("bridge.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


class Store:
    def __init__(self, pool: asyncpg.Pool, timeout: float):
        self.pool = pool
        self.timeout = timeout

    @classmethod
    async def connect(cls, dsn: str, timeout: float = 2.0, max_size: int = 10) -> "Store":
        # min_size=0: the service starts (and answers callers with a prompt)
        # even when the database is down.
        pool = await asyncpg.create_pool(
            dsn, min_size=0, max_size=max_size, timeout=timeout, command_timeout=timeout,
        )
        return cls(pool, timeout)

    async def close(self) -> None:
        await self.pool.close()

    async def _run(self, operation):
        try:
            async with asyncio.timeout(self.timeout):
                async with self.pool.acquire() as conn:
                    return await operation(conn)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from None

    async def ping(self) -> None:
        await self._run(lambda conn: conn.fetchval("SELECT 1"))

    # -- schema -------------------------------------------------------------
    async def upgrade(self) -> list[str]:
        """Apply pending migrations in order; return the names applied."""
        applied: list[str] = []
        async with self.pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
                for version, name, sql in migrations():
                    if version in done:
                        continue
                    async with conn.transaction():
                        await conn.execute(sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                        )
                    applied.append(name)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        return applied

    # -- the call path ----------------------------------------------------------
    async def route_lookup(self, virtual_number: str, caller: str | None) -> RouteLookup:
        """One round trip: is the number ours, and which sessions on it include the caller."""

        async def query(conn):
            rows = await conn.fetch(
                """
                SELECT EXISTS (SELECT 1 FROM virtual_numbers WHERE number = $1) AS in_pool, s.*
                FROM (SELECT 1) AS one
                LEFT JOIN LATERAL (
                    SELECT * FROM masking_sessions
                    WHERE virtual_number = $1 AND $2::text IS NOT NULL
                      AND (participant_a = $2 OR participant_b = $2)
                    ORDER BY created_at DESC LIMIT 5
                ) AS s ON true
                """,
                virtual_number, caller,
            )
            sessions = tuple(_session(r) for r in rows if r["id"] is not None)
            return RouteLookup(number_in_pool=rows[0]["in_pool"], sessions=sessions)

        return await self._run(query)

    async def insert_call(self, call_id: uuid.UUID, virtual_number: str, caller_channel_id: str,
                          started_at: datetime, **fields: Any) -> None:
        columns = _checked(fields)
        names = ["id", "virtual_number", "caller_channel_id", "started_at", *columns]
        values = [call_id, virtual_number, caller_channel_id, started_at, *columns.values()]
        placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        await self._run(lambda conn: conn.execute(
            f"INSERT INTO calls ({', '.join(names)}) VALUES ({placeholders})", *values
        ))

    async def update_call(self, call_id: uuid.UUID, **fields: Any) -> None:
        columns = _checked(fields)
        assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(columns, start=2))
        await self._run(lambda conn: conn.execute(
            f"UPDATE calls SET {assignments} WHERE id = $1", call_id, *columns.values()
        ))

    async def insert_recording(self, row: RecordingRow) -> None:
        await self._run(lambda conn: conn.execute(
            "INSERT INTO recordings (id, call_id, storage_path, format, bytes, duration_seconds, sha256)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            row.id, row.call_id, row.storage_path, row.format, row.bytes, row.duration_seconds, row.sha256,
        ))

    # -- operators ---------------------------------------------------------------
    async def add_number(self, number: str) -> None:
        try:
            await self._run(lambda conn: conn.execute("INSERT INTO virtual_numbers (number) VALUES ($1)", number))
        except asyncpg.UniqueViolationError:
            raise NumberAlreadyInPool(f"{number} is already in the pool") from None

    async def list_numbers(self) -> list[dict]:
        rows = await self._run(lambda conn: conn.fetch(
            "SELECT v.number, v.status, v.last_allocated_at,"
            " (SELECT count(*) FROM masking_sessions s WHERE s.virtual_number = v.number"
            "  AND s.status = 'active' AND s.expires_at > now()) AS live_sessions"
            " FROM virtual_numbers v ORDER BY v.number"
        ))
        return [dict(r) for r in rows]

    async def create_session(self, participant_a: str, participant_b: str, ttl: timedelta,
                             record: bool) -> MaskingSession:
        """Allocate the least recently used number free for both participants.

        Per-participant advisory locks serialise concurrent creates for the same
        person, so the check "neither holds this number in a live session" and
        the insert cannot interleave; SKIP LOCKED keeps creates for different
        people from queueing behind each other.
        """

        async def allocate(conn):
            async with conn.transaction():
                for participant in sorted({participant_a, participant_b}):
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", participant)
                number = await conn.fetchval(
                    """
                    SELECT v.number FROM virtual_numbers v
                    WHERE v.status = 'active' AND NOT EXISTS (
                        SELECT 1 FROM masking_sessions s
                        WHERE s.virtual_number = v.number AND s.status = 'active' AND s.expires_at > now()
                          AND (s.participant_a IN ($1, $2) OR s.participant_b IN ($1, $2)))
                    ORDER BY v.last_allocated_at NULLS FIRST, v.number
                    LIMIT 1 FOR UPDATE SKIP LOCKED
                    """,
                    participant_a, participant_b,
                )
                if number is None:
                    counts = await conn.fetchrow(
                        "SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM masking_sessions s"
                        "  WHERE s.virtual_number = v.number AND s.status = 'active' AND s.expires_at > now()))"
                        "  AS free, count(*) AS total FROM virtual_numbers v WHERE v.status = 'active'"
                    )
                    raise PoolExhausted(counts["free"], counts["total"])
                await conn.execute("UPDATE virtual_numbers SET last_allocated_at = now() WHERE number = $1", number)
                row = await conn.fetchrow(
                    "INSERT INTO masking_sessions (id, virtual_number, participant_a, participant_b, record,"
                    " expires_at) VALUES ($1, $2, $3, $4, $5, now() + $6) RETURNING *",
                    uuid.uuid4(), number, participant_a, participant_b, record, ttl,
                )
                return _session(row)

        return await self._run(allocate)

    async def close_session(self, session_id: uuid.UUID) -> bool:
        result = await self._run(lambda conn: conn.execute(
            "UPDATE masking_sessions SET status = 'closed', closed_at = now() WHERE id = $1 AND status = 'active'",
            session_id,
        ))
        return result.endswith(" 1")

    async def list_calls(self, limit: int = 50) -> list[dict]:
        rows = await self._run(lambda conn: conn.fetch(
            "SELECT c.*, r.id AS recording_id, r.storage_path, r.bytes AS recording_bytes,"
            " r.duration_seconds AS recording_seconds"
            " FROM calls c LEFT JOIN recordings r ON r.call_id = c.id"
            " ORDER BY c.started_at DESC LIMIT $1", limit,
        ))
        return [dict(r) for r in rows]

    async def call(self, call_id: uuid.UUID) -> dict | None:
        row = await self._run(lambda conn: conn.fetchrow("SELECT * FROM calls WHERE id = $1", call_id))
        return dict(row) if row else None


def _checked(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - CALL_COLUMNS
    if unknown:
        raise ValueError(f"not call columns: {sorted(unknown)}")
    return fields


def _session(row) -> MaskingSession:
    return MaskingSession(
        id=row["id"], virtual_number=row["virtual_number"], participant_a=row["participant_a"],
        participant_b=row["participant_b"], status=row["status"], record=row["record"],
        created_at=row["created_at"], expires_at=row["expires_at"], closed_at=row["closed_at"],
    )


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


async def ensure_database(dsn: str) -> bool:
    """Create the database named in `dsn` if it does not exist; True if created."""
    import urllib.parse

    parsed = urllib.parse.urlsplit(dsn)
    name = parsed.path.lstrip("/")
    admin = urllib.parse.urlunsplit(parsed._replace(path="/postgres"))
    conn = await asyncpg.connect(admin, timeout=5)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        await conn.execute(f'CREATE DATABASE "{name}"')
        return True
    finally:
        await conn.close()


__all__ = [
    "Store", "StoreError", "StoreUnavailable", "NumberAlreadyInPool", "PoolExhausted",
    "RecordingRow", "ensure_database", "utcnow", "migrations",
]
