"""PostgreSQL: the pool, migrations and every query the bridge runs.

Every call-path query is bounded by `timeout`; a database that is down or slow
surfaces as `StoreUnavailable`, which the call flow turns into a prompt.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Any

import asyncpg

from bridge.privacy.audit import Actor
from bridge.privacy.crypto import DecryptionFailed, KeyRing, Sealed, number_context, recording_key_context
from bridge.privacy.numbers import mask_number
from bridge.sessions.caller_id import PER_PARTICIPANT
from bridge.sessions.models import MaskingSession, RouteLookup, SessionRequest
from bridge.sessions.pool import Candidate, StickyPreference, choose_number, region_of
from bridge.store.audit import AuditQueries
from bridge.store.retention import ErasureReport, PurgeReport, RetentionQueries
from bridge.store.subjects import SubjectQueries
from bridge.store.caller_id import CallerIdQueries
from bridge.store.pins import PinQueries

MIGRATION_LOCK = 0x6D61736B  # 'mask': serialises concurrent `db upgrade`


class StoreError(Exception):
    """Base of every error the store raises on purpose."""


class StoreUnavailable(StoreError):
    """The database could not be reached or did not answer in time."""


class NumberAlreadyInPool(StoreError):
    pass


class NotFound(StoreError):
    """No such session, call, recording or number."""


class NumberUnavailable(StoreError):
    """An explicitly requested number is not in the pool, or retired."""

    def __init__(self, message: str, field: str = "virtual_number"):
        super().__init__(message)
        self.field = field  # which request field named it


class NumberInUse(StoreError):
    """A participant already holds this number in a live session, or (retiring)
    live sessions still use it."""

    def __init__(self, message: str, session_ids: list[str] | None = None):
        super().__init__(message)
        self.session_ids = session_ids or []


class UnknownWaitAudio(StoreError):
    """A session names wait audio that was never uploaded (or was deleted)."""


class SessionNotActive(StoreError):
    """The session is closed or expired; it cannot be changed."""


class SessionAnonymised(StoreError):
    """The session's personal data is gone (retention or erasure): nothing to hold."""


class LegalHoldActive(StoreError):
    """The session is under legal hold: it is not anonymised until released."""


class IdempotencyConflict(StoreError):
    """The Idempotency-Key was used before for a different request."""


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
    asyncpg.OperatorInterventionError,  # admin shutdown, fast restart, terminated backend
    asyncpg.InsufficientResourcesError,
    asyncpg.ReadOnlySQLTransactionError,  # a failover in progress
)

# Columns a call row may be updated with as the call progresses.
CALL_COLUMNS = frozenset({
    "asterisk_node", "path", "session_id", "direction", "callee_channel_id", "ringing_at", "answered_at", "ended_at",
    "disposition", "reject_reason", "dial_status", "caller_hangup_cause", "callee_hangup_cause",
    "hangup_by", "setup_ms", "talk_seconds", "recorded", "notices", "recording_opt_out", "recording_started_at",
    "recording_channels", "kind", "custom_field", "time_limit_seconds", "caller_answered_at",
    "pin_attempts",
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
    # The recording's data key, wrapped by a master key (never the key itself);
    # None for a plaintext file (stored before sealing existed).
    key_id: str | None = None
    wrapped_key: bytes | None = None


CODE_MARKER = "-- masking:code "


def migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("bridge.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


class Store(AuditQueries, RetentionQueries, SubjectQueries, CallerIdQueries, PinQueries):
    def __init__(self, pool: asyncpg.Pool, keys: KeyRing, timeout: float):
        self.pool = pool
        self.keys = keys  # numbers are sealed and hashed with these (bridge/privacy/crypto.py)
        self.timeout = timeout

    @classmethod
    async def connect(cls, dsn: str, keys: KeyRing, timeout: float = 2.0, max_size: int = 10) -> "Store":
        # min_size=0: the service starts (and answers callers with a prompt)
        # even when the database is down.
        pool = await asyncpg.create_pool(
            dsn, min_size=0, max_size=max_size, timeout=timeout, command_timeout=timeout,
        )
        return cls(pool, keys, timeout)

    async def close(self) -> None:
        await self.pool.close()

    async def _run(self, operation, timeout: float | None = None):
        """`operation(conn)` on a pooled connection within `timeout` seconds (the
        store's own by default; retention's batches give theirs); an unreachable
        database is StoreUnavailable."""
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                async with self.pool.acquire() as conn:
                    return await operation(conn)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from None

    def _session(self, row) -> MaskingSession:
        return session_from_row(self.keys, row)

    async def ping(self) -> None:
        await self._run(lambda conn: conn.fetchval("SELECT 1"))

    # -- schema -------------------------------------------------------------
    async def upgrade(self, until: int | None = None) -> list[str]:
        """Apply pending migrations in order (up to version `until`); return the names applied."""
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
                    if version in done or (until is not None and version > until):
                        continue
                    async with conn.transaction():
                        for kind, part in migration_steps(sql):
                            if kind == "sql":
                                await conn.execute(part)
                            else:
                                await CODE_STEPS[part](conn, self.keys)
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
                SELECT EXISTS (SELECT 1 FROM virtual_numbers WHERE number = $1) AS in_pool,
                       EXISTS (SELECT 1 FROM virtual_numbers WHERE number = $1 AND pin_mode) AS pin_mode, s.*
                FROM (SELECT 1) AS one
                LEFT JOIN LATERAL (
                    SELECT * FROM masking_sessions
                    WHERE $2::bytea IS NOT NULL  -- sessions where the caller holds this number:
                      AND ((virtual_number = $1
                            AND (participant_a_hash = $2 OR (participant_b_hash = $2 AND virtual_number_b IS NULL)))
                           OR (virtual_number_b = $1 AND participant_b_hash = $2))
                    ORDER BY created_at DESC LIMIT 5
                ) AS s ON true
                """,
                virtual_number, self.keys.lookup_hash(caller) if caller else None,
            )
            sessions = tuple(self._session(r) for r in rows if r["id"] is not None)
            return RouteLookup(number_in_pool=rows[0]["in_pool"], sessions=sessions, virtual_number=virtual_number,
                               pin_mode=rows[0]["pin_mode"])

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
        """The recording and its wrapped key together, or neither."""
        async def insert(conn):
            async with conn.transaction():
                # Collected after its session was erased (a process died between the
                # hangup and the move): born shredded, its key never stored. The
                # session locked first: an erasure at this moment commits before
                # this reads it, or waits and then finds this recording to shred.
                erased = await conn.fetchval(
                    "SELECT s.anonymised_at IS NOT NULL FROM calls c JOIN masking_sessions s ON s.id = c.session_id"
                    " WHERE c.id = $1 FOR SHARE OF s", row.call_id)
                await conn.execute(
                    "INSERT INTO recordings (id, call_id, storage_path, format, bytes, duration_seconds, sha256,"
                    " sealed, shredded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $9 THEN now() END)",
                    row.id, row.call_id, row.storage_path, row.format, row.bytes, row.duration_seconds,
                    row.sha256, row.wrapped_key is not None, bool(erased))
                if row.wrapped_key is not None and not erased:
                    await _insert_recording_key(conn, row.id, Sealed(row.key_id, row.wrapped_key))

        await self._run(insert)

    # -- wait audio ----------------------------------------------------------------
    async def add_wait_audio(self, audio_id: uuid.UUID, name: str, storage_path: str, size: int,
                             duration_seconds: float, sha256: str) -> dict:
        row = await self._run(lambda conn: conn.fetchrow(
            "INSERT INTO wait_audio (id, name, storage_path, bytes, duration_seconds, sha256)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
            audio_id, name, storage_path, size, duration_seconds, sha256))
        return dict(row)

    async def list_wait_audio(self) -> list[dict]:
        return [dict(r) for r in await self._run(lambda conn: conn.fetch(
            "SELECT * FROM wait_audio ORDER BY created_at"))]

    async def delete_wait_audio(self, audio_id: uuid.UUID) -> dict:
        row = await self._run(lambda conn: conn.fetchrow(
            "DELETE FROM wait_audio WHERE id = $1 RETURNING *", audio_id))
        if row is None:
            raise NotFound("no such wait audio")
        return dict(row)

    # -- keys ----------------------------------------------------------------------
    async def reseal_sessions(self, batch: int = 500) -> int:
        """Re-seal up to `batch` sessions' numbers sealed under a key that is not
        the active one; returns how many. Run until 0 after a new key is activated."""
        active = self.keys.active_id

        async def reseal(conn):
            async with conn.transaction():
                rows = await conn.fetch(
                    "SELECT * FROM masking_sessions WHERE key_id <> $1 LIMIT $2 FOR UPDATE SKIP LOCKED", active, batch)
                await conn.executemany(
                    "UPDATE masking_sessions SET participant_a_sealed = $2, participant_b_sealed = $3, key_id = $4"
                    " WHERE id = $1",
                    [(r["id"], *seal_participants(self.keys, r["id"], *self._numbers(r))[2:]) for r in rows])
                return len(rows)

        return await self._run(reseal)

    async def rows_by_key(self) -> dict[str, int]:
        rows = await self._run(lambda conn: conn.fetch(
            "SELECT key_id, count(*) FROM masking_sessions WHERE key_id IS NOT NULL GROUP BY key_id"))
        return {r["key_id"]: r["count"] for r in rows}

    def _numbers(self, row) -> tuple[str, str]:
        session = self._session(row)
        return session.participant_a, session.participant_b

    # -- operators ---------------------------------------------------------------
    async def add_number(self, number: str, reserved: bool = False, *, by: Actor | None = None,
                         pin_mode: bool = False) -> dict:
        """Add to the pool; `by` writes the number.added audit row in the same transaction."""

        async def add(conn):
            async with conn.transaction():
                row = await conn.fetchrow(
                    "INSERT INTO virtual_numbers (number, reserved, country, pin_mode) VALUES ($1, $2, $3, $4)"
                    " RETURNING *", number, reserved, region_of(number), pin_mode)
                if by:
                    await self.audit_by(by, "number.added", "number", mask_number(number), conn,
                                        subject_hash=self.keys.lookup_hash(number), details={"reserved": reserved, "pin_mode": pin_mode})
                return row

        try:
            row = await self._run(add)
        except asyncpg.UniqueViolationError:
            raise NumberAlreadyInPool(f"{number} is already in the pool") from None
        return dict(row) | {"live_sessions": 0}

    async def list_numbers(self, status: str | None = None) -> list[dict]:
        rows = await self._run(lambda conn: conn.fetch(
            "SELECT v.*, (SELECT count(DISTINCT p.session_id) FROM session_participants p"
            "  WHERE p.virtual_number = v.number AND p.live) AS live_sessions"
            " FROM virtual_numbers v WHERE $1::text IS NULL OR v.status = $1 ORDER BY v.number", status))
        return [dict(r) for r in rows]

    async def retire_number(self, number: str, *, by: Actor | None = None) -> None:
        """Take a number out of the pool; refused while live sessions use it."""

        async def retire(conn):
            async with conn.transaction():
                row = await conn.fetchrow("SELECT status FROM virtual_numbers WHERE number = $1 FOR UPDATE", number)
                if row is None:
                    raise NotFound("no such number in the pool")
                if row["status"] == "retired":
                    return  # nothing changes, so nothing to audit
                await _expire_due(conn)
                users = await conn.fetch(
                    "SELECT DISTINCT session_id FROM session_participants WHERE virtual_number = $1 AND live",
                    number)
                if users:
                    ids = [str(r["session_id"]) for r in users]
                    raise NumberInUse(f"{len(ids)} live session(s) use this number", ids)
                await conn.execute("UPDATE virtual_numbers SET status = 'retired' WHERE number = $1", number)
                if by:
                    await self.audit_by(by, "number.retired", "number", mask_number(number), conn,
                                        subject_hash=self.keys.lookup_hash(number))

        await self._run(retire)

    async def create_session(self, request: SessionRequest, idempotency: tuple[uuid.UUID, str, str] | None = None,
                             ) -> tuple[MaskingSession, bool]:
        """Create a session, or return the one this idempotency key made before.

        Returns (session, created). Per-participant advisory locks serialise
        creates for the same people; the unique index on live participants is
        the guarantee underneath.
        """
        a, b = request.participant_a, request.participant_b
        hash_a, hash_b = self.keys.lookup_hash(a), self.keys.lookup_hash(b)

        async def create(conn):
            async with conn.transaction():
                for participant in sorted({hash_a.hex(), hash_b.hex()}):
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", participant)
                if idempotency:
                    api_key_id, key, request_hash = idempotency
                    seen = await conn.fetchrow(
                        "SELECT request_hash, session_id FROM idempotency_keys WHERE api_key_id = $1 AND key = $2",
                        api_key_id, key)
                    if seen:
                        if seen["request_hash"] != request_hash:
                            raise IdempotencyConflict("this Idempotency-Key was used for a different request")
                        row = await conn.fetchrow("SELECT * FROM masking_sessions WHERE id = $1", seen["session_id"])
                        return self._session(row), False
                await _expire_due(conn)
                number_b = None
                if request.caller_id_policy == PER_PARTICIPANT:
                    number, number_b = await self._allocate_pair(conn, request)
                else:
                    number = request.virtual_number or await (
                        self._allocate_pin_number(conn, request) if request.pin_mode else self._allocate(conn, request))
                if request.virtual_number:
                    await check_assignable(conn, number)
                session_id = uuid.uuid4()
                sealed = seal_participants(self.keys, session_id, a, b)
                if request.wait_audio_id and not await conn.fetchval(
                        "SELECT 1 FROM wait_audio WHERE id = $1", request.wait_audio_id):
                    raise UnknownWaitAudio("no wait audio with that id")
                row = await conn.fetchrow(
                    "INSERT INTO masking_sessions (id, virtual_number, participant_a_hash, participant_b_hash,"
                    " participant_a_sealed, participant_b_sealed, key_id, record, expires_at, external_ref,"
                    " ttl_mode, ttl_seconds, webhook_url, purpose, window_starts_at, window_ends_at,"
                    " time_limit_seconds, wait_audio_id, recording_channels)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9), $10, $11, $9, $12,"
                    " $13, $14, $15, $16, $17, $18) RETURNING *",
                    session_id, number, *sealed, request.record, request.ttl_seconds, request.external_ref,
                    request.ttl_mode, request.webhook_url, request.purpose, request.window_starts_at,
                    request.window_ends_at, request.time_limit_seconds, request.wait_audio_id,
                    request.recording_channels)
                if number_b:
                    row = await self._set_number_b(conn, session_id, number_b)
                row = await self._assign_pin(conn, row, request)  # on a shared number only
                try:
                    async with conn.transaction():
                        await conn.executemany(
                            "INSERT INTO session_participants (session_id, role, virtual_number, number_hash)"
                            " VALUES ($1, $2, $3, $4)",
                            [(session_id, "a", number, hash_a), (session_id, "b", number_b or number, hash_b)])
                except asyncpg.UniqueViolationError:
                    raise NumberInUse("a participant already holds this virtual number in a live session") from None
                # Both numbers in one order: two creates that took each other's
                # numbers in the other order would deadlock.
                for allocated in sorted({number, number_b} - {None}):
                    await conn.execute("UPDATE virtual_numbers SET last_allocated_at = now() WHERE number = $1",
                                       allocated)
                if idempotency:
                    await conn.execute(
                        "INSERT INTO idempotency_keys (api_key_id, key, request_hash, session_id)"
                        " VALUES ($1, $2, $3, $4)", idempotency[0], idempotency[1], idempotency[2], session_id)
                return self._session(row), True

        return await self._run(create)

    async def _allocate(self, conn, request: SessionRequest) -> str:
        participants = [self.keys.lookup_hash(request.participant_a), self.keys.lookup_hash(request.participant_b)]
        candidates = await free_numbers(conn, participants, participants, request.quarantine_seconds)
        number = choose_number(candidates, request.participant_a, request.participant_b,
                               StickyPreference(request.sticky), request.country_match)
        if number is None:
            counts = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE status = 'active' AND NOT reserved) AS allocatable,"
                " count(*) AS total FROM virtual_numbers")
            raise PoolExhausted(len(candidates) - sum(c.quarantined for c in candidates) if candidates else 0,
                                counts["allocatable"])
        return number

    async def get_session(self, session_id: uuid.UUID) -> MaskingSession:
        row = await self._run(lambda conn: conn.fetchrow("SELECT * FROM masking_sessions WHERE id = $1", session_id))
        if row is None:
            raise NotFound("no such session")
        return self._session(row)

    async def list_sessions(self, external_ref: str | None, status: str | None, limit: int) -> list[MaskingSession]:
        rows = await self._run(lambda conn: conn.fetch(
            "SELECT * FROM masking_sessions WHERE ($1::text IS NULL OR external_ref = $1)"
            " AND ($2::text IS NULL OR (CASE WHEN status = 'active' AND expires_at <= now() THEN 'expired'"
            "      ELSE status END) = $2)"
            " ORDER BY created_at DESC LIMIT $3", external_ref, status, limit))
        return [self._session(r) for r in rows]

    async def close_session(self, session_id: uuid.UUID) -> MaskingSession:
        async def close(conn):
            async with conn.transaction():
                row = await conn.fetchrow(
                    "UPDATE masking_sessions SET status = 'closed', closed_at = now()"
                    " WHERE id = $1 AND status = 'active' AND expires_at > now() RETURNING *", session_id)
                if row is None:
                    existing = await conn.fetchrow("SELECT * FROM masking_sessions WHERE id = $1", session_id)
                    if existing is None:
                        raise NotFound("no such session")
                    raise SessionNotActive(f"the session is {self._session(existing).state(utcnow())}")
                await conn.execute("UPDATE session_participants SET live = false, ended_at = now()"
                                   " WHERE session_id = $1", session_id)
                return self._session(row)

        return await self._run(close)

    async def extend_session(self, session_id: uuid.UUID, ttl_seconds: int) -> MaskingSession:
        """Live again for `ttl_seconds` from now; only a live session can be extended."""
        async def extend(conn):
            row = await conn.fetchrow(
                "UPDATE masking_sessions SET expires_at = now() + make_interval(secs => $2), ttl_seconds = $2"
                " WHERE id = $1 AND status = 'active' AND expires_at > now() RETURNING *", session_id, ttl_seconds)
            if row is None:
                existing = await conn.fetchrow("SELECT * FROM masking_sessions WHERE id = $1", session_id)
                if existing is None:
                    raise NotFound("no such session")
                raise SessionNotActive(f"the session is {self._session(existing).state(utcnow())}")
            return self._session(row)

        return await self._run(extend)

    async def touch_session(self, session_id: uuid.UUID) -> None:
        """A call on a `last_interaction` session restarts its TTL."""
        await self._run(lambda conn: conn.execute(
            "UPDATE masking_sessions SET expires_at = now() + make_interval(secs => ttl_seconds)"
            " WHERE id = $1 AND ttl_mode = 'last_interaction' AND status = 'active' AND expires_at > now()",
            session_id))

    async def expire_due(self, default_webhook_url: str | None = None) -> list[uuid.UUID]:
        """Mark sessions past their time expired (and enqueue session.expired)."""
        async def expire(conn):
            async with conn.transaction():
                return await _expire_due(conn, default_webhook_url)

        return await self._run(expire)

    async def next_expiry(self) -> datetime | None:
        return await self._run(lambda conn: conn.fetchval(
            "SELECT min(expires_at) FROM masking_sessions WHERE status = 'active'"))

    # -- API keys -----------------------------------------------------------------
    async def create_api_key(self, name: str, scopes: list[str], *, by: Actor | None = None) -> tuple[str, dict]:
        """Return (token, row). The token is shown once; only its hash is kept (and
        the apikey.created row written for `by` names the key by its prefix)."""
        prefix, secret = secrets.token_hex(4), secrets.token_urlsafe(24)

        async def create(conn):
            async with conn.transaction():
                row = await conn.fetchrow(
                    "INSERT INTO api_keys (id, name, prefix, key_hash, scopes) VALUES ($1, $2, $3, $4, $5)"
                    " RETURNING id, name, prefix, scopes, created_at",
                    uuid.uuid4(), name, prefix, _hash_secret(secret), scopes)
                if by:
                    await self.audit_by(by, "apikey.created", "apikey", prefix, conn,
                                        details={"name": name, "scopes": scopes})
                return row

        return f"mk_{prefix}_{secret}", dict(await self._run(create))

    async def api_key_for_token(self, token: str) -> dict | None:
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "mk":
            return None
        row = await self._run(lambda conn: conn.fetchrow(
            "SELECT * FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL", parts[1]))
        if row is None or not secrets.compare_digest(row["key_hash"], _hash_secret(parts[2])):
            return None
        return dict(row)

    async def list_api_keys(self) -> list[dict]:
        rows = await self._run(lambda conn: conn.fetch(
            "SELECT id, name, prefix, scopes, created_at, revoked_at FROM api_keys ORDER BY created_at"))
        return [dict(r) for r in rows]

    async def revoke_api_key(self, prefix: str, *, by: Actor | None = None) -> bool:
        async def revoke(conn):
            async with conn.transaction():
                name = await conn.fetchval("UPDATE api_keys SET revoked_at = now()"
                                           " WHERE prefix = $1 AND revoked_at IS NULL RETURNING name", prefix)
                if name is not None and by:
                    await self.audit_by(by, "apikey.revoked", "apikey", prefix, conn, details={"name": name})
                return name is not None

        return await self._run(revoke)

    # -- webhooks outbox --------------------------------------------------------------
    async def enqueue_event(self, event_type: str, session_id: uuid.UUID | None, url: str, data: dict,
                            event_id: uuid.UUID | None = None) -> None:
        """Idempotent for a given `event_id`: a retried write is not a second event."""
        await self._run(lambda conn: _enqueue(conn, event_type, session_id, url, data, event_id))

    async def due_events(self, limit: int = 20) -> list[dict]:
        """Pending deliveries whose time has come, claimed for 60 s so that two
        workers never send the same event at once."""
        rows = await self._run(lambda conn: conn.fetch(
            "UPDATE webhook_outbox SET next_attempt_at = now() + interval '60 seconds'"
            " WHERE id IN (SELECT id FROM webhook_outbox WHERE status = 'pending' AND next_attempt_at <= now()"
            "  ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING *", limit))
        return [dict(r) for r in rows]

    async def event_delivered(self, outbox_id: int) -> None:
        await self._run(lambda conn: conn.execute(
            "UPDATE webhook_outbox SET status = 'delivered', delivered_at = now(), attempts = attempts + 1,"
            " last_error = NULL WHERE id = $1", outbox_id))

    async def events_reschedule(self, outbox_ids: list[int], delay: float) -> None:
        """Release claimed events to be tried again in `delay` seconds."""
        await self._run(lambda conn: conn.execute(
            "UPDATE webhook_outbox SET next_attempt_at = now() + make_interval(secs => $2::float8)"
            " WHERE id = ANY($1::bigint[]) AND status = 'pending'", outbox_ids, delay))

    async def event_failed(self, outbox_id: int, error: str, retry_in: float | None) -> None:
        """Schedule another attempt in `retry_in` seconds, or dead-letter it (None)."""
        await self._run(lambda conn: conn.execute(
            "UPDATE webhook_outbox SET attempts = attempts + 1, last_error = $2,"
            " status = CASE WHEN $3::float8 IS NULL THEN 'dead' ELSE 'pending' END,"
            " next_attempt_at = now() + make_interval(secs => coalesce($3::float8, 0)) WHERE id = $1",
            outbox_id, error[:500], retry_in))

    async def list_events(self, status: str | None = None, limit: int = 50) -> list[dict]:
        rows = await self._run(lambda conn: conn.fetch(
            "SELECT id, event_id, event_type, session_id, url, status, attempts, last_error, created_at,"
            " delivered_at, next_attempt_at FROM webhook_outbox WHERE $1::text IS NULL OR status = $1"
            " ORDER BY id DESC LIMIT $2", status, limit))
        return [dict(r) for r in rows]

    async def retry_dead_events(self) -> int:
        result = await self._run(lambda conn: conn.execute(
            "UPDATE webhook_outbox SET status = 'pending', next_attempt_at = now(), attempts = 0"
            " WHERE status = 'dead'"))
        return int(result.split()[-1])

    async def list_calls(self, limit: int = 50, session_id: uuid.UUID | None = None) -> list[dict]:
        rows = await self._run(lambda conn: conn.fetch(
            "SELECT c.*, r.id AS recording_id, r.storage_path, r.bytes AS recording_bytes,"
            " r.duration_seconds AS recording_seconds"
            " FROM calls c LEFT JOIN recordings r ON r.call_id = c.id"
            " WHERE $2::uuid IS NULL OR c.session_id = $2"
            " ORDER BY c.started_at DESC LIMIT $1", limit, session_id))
        return [dict(r) for r in rows]

    async def calls_in_progress(self, asterisk_node: str) -> list[dict]:
        rows = await self._run(lambda conn: conn.fetch(
            "SELECT * FROM calls WHERE disposition = 'in_progress' AND asterisk_node = $1 AND path = 'ari'"
            " ORDER BY started_at",
            asterisk_node))
        return [dict(r) for r in rows]

    async def recordings_not_collected(self, asterisk_node: str) -> list[dict]:
        """Recorded calls that ended (in the last day) without a recording row:
        their process died between hanging up and moving the file."""
        rows = await self._run(lambda conn: conn.fetch(
            "SELECT c.id, c.started_at, c.recording_channels FROM calls c LEFT JOIN recordings r ON r.call_id = c.id"
            " WHERE c.recorded AND r.id IS NULL AND c.asterisk_node = $1 AND c.path = 'ari'"
            " AND c.disposition IN ('answered', 'interrupted', 'time_limit') AND c.ended_at > now() - interval '1 day'",
            asterisk_node))
        return [dict(r) for r in rows]

    async def try_lease(self, conn: asyncpg.Connection, key: str) -> bool:
        """Take the per-Asterisk-node lease on `conn` (held while it stays open)."""
        return await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key)

    async def call(self, call_id: uuid.UUID) -> dict:
        row = await self._run(lambda conn: conn.fetchrow(
            "SELECT c.*, r.id AS recording_id FROM calls c LEFT JOIN recordings r ON r.call_id = c.id"
            " WHERE c.id = $1", call_id))
        if row is None:
            raise NotFound("no such call")
        return dict(row)

    async def recording(self, recording_id: uuid.UUID) -> dict:
        row = await self._run(lambda conn: conn.fetchrow(
            "SELECT r.*, c.session_id, s.purpose FROM recordings r JOIN calls c ON c.id = r.call_id"
            " LEFT JOIN masking_sessions s ON s.id = c.session_id WHERE r.id = $1",
            recording_id))
        if row is None:
            raise NotFound("no such recording")
        return dict(row)

    # -- recordings at rest ----------------------------------------------------------
    async def recording_key(self, recording_id: uuid.UUID) -> Sealed | None:
        """The recording's wrapped data key; None once shredded (or never sealed)."""
        row = await self._run(lambda conn: conn.fetchrow(
            "SELECT key_id, wrapped_key FROM recording_keys WHERE recording_id = $1", recording_id))
        return Sealed(row["key_id"], row["wrapped_key"]) if row else None

    async def shred_recording(self, recording_id: uuid.UUID, conn: asyncpg.Connection | None = None) -> datetime:
        """Delete the recording's wrapped key: its audio is unreadable wherever a
        copy of the file is. Idempotent; returns when it was first shredded.

        `conn`: run in the caller's transaction (erasure, retention purge). A
        recording stored before sealing has no key: the sealing pass deletes its
        plaintext instead of sealing it (`bridge/recordings/backfill.py`).
        """
        async def shred(conn):
            async with conn.transaction():
                # The row lock first: a concurrent sealing commits its key before
                # this deletes it, or sees the row shredded and stores none.
                shredded_at = await conn.fetchval(
                    "UPDATE recordings SET shredded_at = coalesce(shredded_at, now()) WHERE id = $1"
                    " RETURNING shredded_at", recording_id)
                if shredded_at is None:
                    raise NotFound("no such recording")
                await conn.execute("DELETE FROM recording_keys WHERE recording_id = $1", recording_id)
                return shredded_at

        return await (shred(conn) if conn is not None else self._run(shred))

    async def rewrap_recording_keys(self, batch: int = 500) -> int:
        """Re-wrap up to `batch` data keys held under an older master key with the
        active one (the audio is not touched); returns how many. Keys under a
        master key the ring no longer holds are left alone: nothing can open them."""
        older = sorted(set(self.keys.keys) - {self.keys.active_id})

        async def rewrap(conn):
            async with conn.transaction():
                rows = await conn.fetch(
                    "SELECT recording_id, key_id, wrapped_key FROM recording_keys WHERE key_id = ANY($1)"
                    " ORDER BY recording_id LIMIT $2 FOR UPDATE SKIP LOCKED", older, batch)
                rewrapped = []
                for r in rows:
                    context = recording_key_context(r["recording_id"])
                    try:
                        dek = self.keys.open(r["key_id"], r["wrapped_key"], context)
                    except DecryptionFailed:
                        raise DecryptionFailed(f"the key of recording {r['recording_id']} does not open") from None
                    new = self.keys.seal(dek, context)
                    rewrapped.append((r["recording_id"], new.key_id, new.blob))
                await conn.executemany("UPDATE recording_keys SET key_id = $2, wrapped_key = $3"
                                       " WHERE recording_id = $1", rewrapped)
                return len(rewrapped)

        return await self._run(rewrap) if older else 0

    async def unsealed_recordings(self, after: uuid.UUID, limit: int) -> list[dict]:
        """Recordings still stored as plaintext, in id order after `after`."""
        rows = await self._run(lambda conn: conn.fetch(
            "SELECT id, storage_path, bytes, sha256, shredded_at FROM recordings WHERE NOT sealed AND id > $1"
            " ORDER BY id LIMIT $2", after, limit))
        return [dict(r) for r in rows]

    async def mark_recording_sealed(self, recording_id: uuid.UUID, storage_path: str, key: Sealed) -> bool:
        """Point a plaintext recording at its sealed file and store its wrapped
        key; False if another sealer got there first (its file counts, not
        this one). A recording shredded meanwhile keeps no key."""
        async def mark(conn):
            async with conn.transaction():
                row = await conn.fetchrow(
                    "UPDATE recordings SET sealed = true, storage_path = $2 WHERE id = $1 AND NOT sealed"
                    " RETURNING shredded_at", recording_id, storage_path)
                if row is not None and row["shredded_at"] is None:
                    await _insert_recording_key(conn, recording_id, key)
                return row is not None

        return await self._run(mark)

    async def pool_counts(self) -> dict:
        row = await self._run(lambda conn: conn.fetchrow(
            "SELECT count(*) FILTER (WHERE v.status = 'active') AS active,"
            " count(*) FILTER (WHERE v.status = 'active' AND EXISTS (SELECT 1 FROM session_participants p"
            "   WHERE p.virtual_number = v.number AND p.live)) AS in_use FROM virtual_numbers v"))
        return dict(row)


# Numbers a session may take for `holders` (both participants on a shared
# number, one on a per-participant one): in the pool, not reserved, not shared
# with a PIN, held live by none of them. `held_before` and `quarantined`
# (a holder's earlier number, ended within the quarantine) feed the pure
# ranking in sessions/pool.py; the pair's own earlier sessions never quarantine.
_FREE_NUMBERS = """
    SELECT v.number, v.country, v.last_allocated_at,
           EXISTS (SELECT 1 FROM session_participants p
                   WHERE p.virtual_number = v.number AND p.number_hash = ANY($1) AND NOT p.live) AS held_before,
           EXISTS (SELECT 1 FROM session_participants p JOIN masking_sessions s ON s.id = p.session_id
                   WHERE p.virtual_number = v.number AND p.number_hash = ANY($1) AND NOT p.live
                     AND p.ended_at > now() - make_interval(secs => $3)
                     AND NOT (s.participant_a_hash = ANY($2) AND s.participant_b_hash = ANY($2))) AS quarantined
    FROM virtual_numbers v
    WHERE v.status = 'active' AND NOT v.reserved AND NOT v.pin_mode
      AND NOT EXISTS (SELECT 1 FROM session_participants p
                      WHERE p.virtual_number = v.number AND p.number_hash = ANY($1) AND p.live)
"""


async def check_assignable(conn, number: str, field: str = "virtual_number") -> None:
    """An explicitly requested number must be in the pool and not retired."""
    status = await conn.fetchval("SELECT status FROM virtual_numbers WHERE number = $1", number)
    if status != "active":
        raise NumberUnavailable("that virtual number is not in the pool" if status is None
                                else "that virtual number is retired", field=field)


async def free_numbers(conn, holders: list[bytes], pair: list[bytes], quarantine_seconds: int) -> list[Candidate]:
    """The pool's candidates for `holders` (keyed hashes), in the caller's transaction."""
    rows = await conn.fetch(_FREE_NUMBERS, holders, pair, quarantine_seconds)
    return [Candidate(r["number"], r["country"], r["last_allocated_at"], r["held_before"], r["quarantined"])
            for r in rows]


async def _expire_due(conn, default_webhook_url: str | None = None, limit: int = 500) -> list[uuid.UUID]:
    """Expire sessions past their time, in the caller's transaction.

    Runs before every allocation (so an expired session never blocks the
    unique index) and from the service's expiry timer (so webhooks go out on
    time): one mechanism, no cron.
    """
    rows = await conn.fetch(
        "UPDATE masking_sessions SET status = 'expired' WHERE id IN (SELECT id FROM masking_sessions"
        " WHERE status = 'active' AND expires_at <= now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " RETURNING id, external_ref, webhook_url, expires_at", limit)
    for row in rows:
        await conn.execute("UPDATE session_participants SET live = false, ended_at = $2 WHERE session_id = $1",
                           row["id"], row["expires_at"])
        url = row["webhook_url"] or default_webhook_url
        if url:
            await _enqueue(conn, "session.expired", row["id"], url,
                           {"session_id": str(row["id"]), "external_ref": row["external_ref"],
                            "expired_at": row["expires_at"].isoformat()})
    return [r["id"] for r in rows]


async def _enqueue(conn, event_type: str, session_id: uuid.UUID | None, url: str, data: dict,
                   event_id: uuid.UUID | None = None) -> None:
    event_id = event_id or uuid.uuid4()
    payload = {"id": str(event_id), "type": event_type, "created_at": utcnow().isoformat(), "data": data}
    await conn.execute(
        "INSERT INTO webhook_outbox (event_id, event_type, session_id, url, payload) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (event_id) DO NOTHING",
        event_id, event_type, session_id, url, json.dumps(payload))


async def _insert_recording_key(conn, recording_id: uuid.UUID, key: Sealed) -> None:
    await conn.execute("INSERT INTO recording_keys (recording_id, key_id, wrapped_key) VALUES ($1, $2, $3)",
                       recording_id, key.key_id, key.blob)


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _checked(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - CALL_COLUMNS
    if unknown:
        raise ValueError(f"not call columns: {sorted(unknown)}")
    return fields


def session_from_row(keys: KeyRing, row) -> MaskingSession:
    """A session row with its participants' numbers opened (only ever in memory)."""
    session_id, key_id = row["id"], row["key_id"]

    def opened(column: str) -> str | None:  # None once anonymised
        sealed = row[f"{column}_sealed"]
        return None if sealed is None else keys.open_number(key_id, sealed,
                                                            number_context("masking_sessions", session_id, column))

    return MaskingSession(
        id=session_id, virtual_number=row["virtual_number"],
        participant_a=opened("participant_a"), participant_b=opened("participant_b"),
        status=row["status"], record=row["record"],
        created_at=row["created_at"], expires_at=row["expires_at"], closed_at=row["closed_at"],
        external_ref=row["external_ref"], ttl_mode=row["ttl_mode"], ttl_seconds=row["ttl_seconds"],
        webhook_url=row["webhook_url"], purpose=row["purpose"],
        window_starts_at=row["window_starts_at"], window_ends_at=row["window_ends_at"],
        time_limit_seconds=row["time_limit_seconds"],
        wait_audio_id=row["wait_audio_id"], recording_channels=row["recording_channels"],
        anonymised_at=row.get("anonymised_at"), legal_hold_at=row.get("legal_hold_at"),
        legal_hold_reason=row.get("legal_hold_reason"), legal_hold_by=row.get("legal_hold_by"),
        caller_id_policy=row["caller_id_policy"], virtual_number_b=row["virtual_number_b"],
        pin=row["pin"], pin_unknown_callers=row["pin_unknown_callers"],
    )


def seal_participants(keys: KeyRing, session_id: uuid.UUID, a: str, b: str) -> tuple:
    """(hash a, hash b, sealed a, sealed b, key id): the columns that hold a session's numbers."""
    return (keys.lookup_hash(a), keys.lookup_hash(b),
            keys.seal_number(a, number_context("masking_sessions", session_id, "participant_a")),
            keys.seal_number(b, number_context("masking_sessions", session_id, "participant_b")),
            keys.row_key_id)


def migration_steps(sql: str) -> list[tuple[str, str]]:
    """A migration's parts in order: ("sql", text) and ("code", step name) at
    each `-- masking:code NAME` line, for data changes SQL cannot make."""
    steps, current = [], []
    for line in sql.splitlines():
        if line.startswith(CODE_MARKER):
            steps.append(("sql", "\n".join(current)))
            steps.append(("code", line[len(CODE_MARKER):].strip()))
            current = []
        else:
            current.append(line)
    steps.append(("sql", "\n".join(current)))
    return [(kind, part) for kind, part in steps if kind == "code" or part.strip()]


async def _seal_participant_numbers(conn, keys: KeyRing) -> None:
    """0005: encrypt and hash the numbers stored in clear before it."""
    rows = await conn.fetch("SELECT id, participant_a, participant_b FROM masking_sessions")
    await conn.executemany(
        "UPDATE masking_sessions SET participant_a_hash = $2, participant_b_hash = $3, participant_a_sealed = $4,"
        " participant_b_sealed = $5, key_id = $6 WHERE id = $1",
        [(r["id"], *seal_participants(keys, r["id"], r["participant_a"], r["participant_b"])) for r in rows])
    numbers = await conn.fetch("SELECT DISTINCT number FROM session_participants")
    await conn.executemany("UPDATE session_participants SET number_hash = $2 WHERE number = $1",
                           [(r["number"], keys.lookup_hash(r["number"])) for r in numbers])


CODE_STEPS = {"seal_participant_numbers": _seal_participant_numbers}


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
    "Store", "StoreError", "StoreUnavailable", "NumberAlreadyInPool", "PoolExhausted", "NotFound",
    "NumberUnavailable", "NumberInUse", "SessionNotActive", "SessionAnonymised", "LegalHoldActive",
    "PurgeReport", "ErasureReport", "UnknownWaitAudio", "IdempotencyConflict",
    "RecordingRow", "ensure_database", "utcnow", "migrations",
]
