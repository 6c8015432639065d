"""Masking sessions' SQL (`masking_sessions`, `session_participants`,
`idempotency_keys`): the call path's lookup, creating a session with its
numbers and PIN in one transaction, and a session's life (close, extend,
touch, expire) and keys (re-sealing after a key rotation).

Each session belongs to an account (bridge/store/apikeys.py). Reads and
changes made for an API key take its `account_id` and find nothing outside
it: a foreign session is `NotFound`, exactly like a missing one. Without an
`account_id` (the operator's CLI, the service) every session is seen."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import NoReturn

import asyncpg

from bridge.clock import utcnow
from bridge.sessions.caller_id import PER_PARTICIPANT
from bridge.sessions.models import MaskingSession, RouteLookup, SessionRequest
from bridge.store.allocation import allocate_pair, allocate_shared, set_number_b
from bridge.store.apikeys import DEFAULT_ACCOUNT_ID
from bridge.store.consent import WITHDRAWN, rotation_safe
from bridge.store.db import Database
from bridge.store.errors import IdempotencyConflict, NotFound, NumberInUse, SessionNotActive, UnknownWaitAudio
from bridge.store.expiry import expire_due_in
from bridge.store.numbers import check_assignable, check_not_held
from bridge.store.outbox import Outbox
from bridge.store.pins import allocate_pin_number, assign_pin
from bridge.store.rows import seal_participants, session_from_row


# The session is `$2`'s account's (NULL: the operator's view, every session).
OWN = "($2::uuid IS NULL OR account_id = $2::uuid)"


class Sessions:
    """`store.sessions`."""

    def __init__(self, db: Database, outbox: Outbox, default_webhook_url: str | None = None):
        """`default_webhook_url`: where a session without its own URL reports
        expiring (MASKING_WEBHOOK_URL), when a create finds it past its time."""
        self.db, self.outbox, self.default_webhook_url = db, outbox, default_webhook_url

    def _session(self, row: asyncpg.Record) -> MaskingSession:
        return session_from_row(self.db.keys, row)

    async def route_lookup(self, virtual_number: str, caller: str | None) -> RouteLookup:
        """One round trip: is the number ours, and which sessions on it include the caller."""

        async def query(conn):
            rows = await conn.fetch(
                f"""
                SELECT EXISTS (SELECT 1 FROM virtual_numbers WHERE number = $1) AS in_pool,
                       EXISTS (SELECT 1 FROM virtual_numbers WHERE number = $1 AND pin_mode) AS pin_mode, s.*
                FROM (SELECT 1) AS one
                LEFT JOIN LATERAL (
                    SELECT *, {WITHDRAWN} AS withdrawn FROM masking_sessions
                    WHERE $2::bytea[] IS NOT NULL  -- sessions where the caller holds this number:
                      AND ((virtual_number = $1
                            AND (participant_a_hash = ANY($2)
                                 OR (participant_b_hash = ANY($2) AND virtual_number_b IS NULL)))
                           OR (virtual_number_b = $1 AND participant_b_hash = ANY($2)))
                    ORDER BY created_at DESC LIMIT 5
                ) AS s ON true
                """,
                # Under every lookup key in use: during a rotation a row may not be re-hashed yet.
                virtual_number, self.db.keys.lookup_hashes(caller) if caller else None,
            )
            sessions = await rotation_safe(conn, self.db.keys,
                                           tuple(self._session(r) for r in rows if r["id"] is not None))
            return RouteLookup(number_in_pool=rows[0]["in_pool"], sessions=sessions, virtual_number=virtual_number,
                               pin_mode=rows[0]["pin_mode"])

        return await self.db.lookup(query)

    async def create(self, request: SessionRequest, idempotency: tuple[uuid.UUID, str, str | list[str]] | None = None,
                     account_id: uuid.UUID | None = None) -> tuple[MaskingSession, bool]:
        """Create a session (for `account_id`, else the default account), or return
        the one this idempotency key made before.

        Returns (session, created). Per-participant advisory locks serialise
        creates for the same people; the unique index on live participants is
        the guarantee underneath.
        """
        keys = self.db.keys
        a, b = request.participant_a, request.participant_b
        lookup = keys.lookups()  # one reading of the key file: the hashes and their label agree
        hash_a, hash_b = lookup.hash(a), lookup.hash(b)
        hashes_a, hashes_b = lookup.hashes(a), lookup.hashes(b)

        async def create(conn):
            async with conn.transaction():
                # Every key's hash: a creator whose ring has another active key takes the same locks.
                for participant in sorted({h.hex() for h in hashes_a + hashes_b}):
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", participant)
                if idempotency:
                    api_key_id, key, request_hash = idempotency
                    # A digest list: the stored one may be under an older lookup key (KeyRing.keyed_digests).
                    digests = [request_hash] if isinstance(request_hash, str) else request_hash
                    seen = await conn.fetchrow(
                        "SELECT request_hash, session_id FROM idempotency_keys WHERE api_key_id = $1 AND key = $2",
                        api_key_id, key)
                    if seen:
                        if seen["request_hash"] not in digests:
                            raise IdempotencyConflict("this Idempotency-Key was used for a different request")
                        row = await conn.fetchrow("SELECT * FROM masking_sessions WHERE id = $1", seen["session_id"])
                        return self._session(row), False
                # Expired here (before the unique index on live participants
                # refuses a returning customer), told after the commit below.
                expired[:] = await expire_due_in(conn, self.default_webhook_url, notify=False)
                number_b = None
                if request.caller_id_policy == PER_PARTICIPANT:
                    number, number_b = await allocate_pair(conn, keys, request)
                else:
                    number = request.virtual_number or await (
                        allocate_pin_number(conn, request) if request.pin_mode
                        else allocate_shared(conn, keys, request))
                if request.virtual_number:
                    await check_assignable(conn, number)
                session_id = uuid.uuid4()
                sealed = seal_participants(keys, session_id, a, b, lookup)
                account = account_id or DEFAULT_ACCOUNT_ID
                if request.wait_audio_id and not await conn.fetchval(
                        "SELECT 1 FROM wait_audio WHERE id = $1 AND account_id = $2", request.wait_audio_id, account):
                    raise UnknownWaitAudio("no wait audio with that id")
                row = await conn.fetchrow(
                    "INSERT INTO masking_sessions (id, virtual_number, participant_a_hash, participant_b_hash,"
                    " participant_a_sealed, participant_b_sealed, key_id, record, expires_at, external_ref,"
                    " ttl_mode, ttl_seconds, webhook_url, purpose, window_starts_at, window_ends_at,"
                    " time_limit_seconds, wait_audio_id, recording_channels, account_id, lookup_key_id)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9), $10, $11, $9, $12,"
                    " $13, $14, $15, $16, $17, $18, $19, $20) RETURNING *",
                    session_id, number, *sealed, request.record, request.ttl_seconds, request.external_ref,
                    request.ttl_mode, request.webhook_url, request.purpose, request.window_starts_at,
                    request.window_ends_at, request.time_limit_seconds, request.wait_audio_id,
                    request.recording_channels, account, lookup.active)
                if request.record and await conn.fetchval(  # a participant withdrew consent: never recorded
                        "SELECT 1 FROM do_not_record WHERE number_hash = ANY($1)",  # under every key in use
                        lookup.hashes(a) + lookup.hashes(b)):
                    row = await conn.fetchrow("UPDATE masking_sessions SET record = false WHERE id = $1 RETURNING *",
                                              session_id)
                if request.dnc_reference:  # a marketing purpose's Do Not Call check, kept with the session
                    row = await conn.fetchrow("UPDATE masking_sessions SET dnc_checked_at = $2, dnc_reference = $3"
                                              " WHERE id = $1 RETURNING *", session_id, request.dnc_checked_at,
                                              request.dnc_reference)
                if number_b:
                    row = await set_number_b(conn, session_id, number_b)
                row = await assign_pin(conn, row, request)  # on a shared number only
                if row["pin"] is None:
                    await check_not_held(conn, [(number, hashes_a), (number_b or number, hashes_b)])
                try:
                    async with conn.transaction():
                        await conn.executemany(
                            "INSERT INTO session_participants (session_id, role, virtual_number, number_hash,"
                            " lookup_key_id) VALUES ($1, $2, $3, $4, $5)",
                            [(session_id, "a", number, hash_a, lookup.active),
                             (session_id, "b", number_b or number, hash_b, lookup.active)])
                except asyncpg.UniqueViolationError:
                    raise NumberInUse("a participant already holds this virtual number in a live session") from None
                # Both numbers in one order: two creates that took each other's
                # numbers in the other order would deadlock.
                for allocated in sorted({number, number_b} - {None}):
                    await conn.execute("UPDATE virtual_numbers SET last_allocated_at = now() WHERE number = $1",
                                       allocated)
                if idempotency:
                    await conn.execute(
                        "INSERT INTO idempotency_keys (api_key_id, key, request_hash, session_id, lookup_key_id)"
                        " VALUES ($1, $2, $3, $4, $5)", idempotency[0], idempotency[1], digests[0], session_id,
                        lookup.active)
                return self._session(row), True

        expired: list[uuid.UUID] = []
        created = await self.db.run(create)
        if expired:
            self.outbox.told()  # their session.expired events are committed
        return created

    async def get(self, session_id: uuid.UUID, account_id: uuid.UUID | None = None) -> MaskingSession:
        row = await self.db.run(lambda conn: conn.fetchrow(
            f"SELECT * FROM masking_sessions WHERE id = $1 AND {OWN}", session_id, account_id))
        if row is None:
            raise NotFound("no such session")
        return self._session(row)

    async def list(self, external_ref: str | None, status: str | None, limit: int,
                   account_id: uuid.UUID | None = None) -> list[MaskingSession]:
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT * FROM masking_sessions WHERE ($1::text IS NULL OR external_ref = $1)"
            " AND ($2::text IS NULL OR (CASE WHEN status = 'active' AND expires_at <= now() THEN 'expired'"
            "      ELSE status END) = $2)"
            " AND ($4::uuid IS NULL OR account_id = $4)"
            " ORDER BY created_at DESC LIMIT $3", external_ref, status, limit, account_id))
        return [self._session(r) for r in rows]

    async def on_virtual_number(self, number: str, limit: int = 50) -> list[MaskingSession]:
        """Sessions that held `number` (as A's number or B's own), newest first."""
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT * FROM masking_sessions WHERE virtual_number = $1 OR virtual_number_b = $1"
            " ORDER BY created_at DESC LIMIT $2", number, limit))
        return [self._session(r) for r in rows]

    async def close(self, session_id: uuid.UUID, account_id: uuid.UUID | None = None) -> MaskingSession:
        async def close(conn):
            async with conn.transaction():
                row = await conn.fetchrow(
                    "UPDATE masking_sessions SET status = 'closed', closed_at = now()"
                    f" WHERE id = $1 AND status = 'active' AND expires_at > now() AND {OWN} RETURNING *",
                    session_id, account_id)
                if row is None:
                    await self._refuse_change(conn, session_id, account_id)
                await conn.execute("UPDATE session_participants SET live = false, ended_at = now()"
                                   " WHERE session_id = $1", session_id)
                return self._session(row)

        return await self.db.run(close)

    async def extend(self, session_id: uuid.UUID, ttl_seconds: int,
                     account_id: uuid.UUID | None = None) -> MaskingSession:
        """Live again for `ttl_seconds` from now; only a live session can be extended."""
        async def extend(conn):
            row = await conn.fetchrow(
                "UPDATE masking_sessions SET expires_at = now() + make_interval(secs => $3), ttl_seconds = $3"
                f" WHERE id = $1 AND status = 'active' AND expires_at > now() AND {OWN} RETURNING *",
                session_id, account_id, ttl_seconds)
            if row is None:
                await self._refuse_change(conn, session_id, account_id)
            return self._session(row)

        return await self.db.run(extend)

    async def _refuse_change(self, conn: asyncpg.Connection, session_id: uuid.UUID,
                             account_id: uuid.UUID | None) -> NoReturn:
        """Why a live-only change did not apply: no such session (or another
        account's: the same answer), or not live."""
        existing = await conn.fetchrow(f"SELECT * FROM masking_sessions WHERE id = $1 AND {OWN}",
                                       session_id, account_id)
        if existing is None:
            raise NotFound("no such session")
        raise SessionNotActive(f"the session is {self._session(existing).state(utcnow())}")

    async def touch(self, session_id: uuid.UUID) -> None:
        """A call on a `last_interaction` session restarts its TTL."""
        await self.db.run(lambda conn: conn.execute(
            "UPDATE masking_sessions SET expires_at = now() + make_interval(secs => ttl_seconds)"
            " WHERE id = $1 AND ttl_mode = 'last_interaction' AND status = 'active' AND expires_at > now()",
            session_id))

    async def expire_due(self, default_webhook_url: str | None = None) -> list[uuid.UUID]:
        """Mark sessions past their time expired (and enqueue session.expired)."""
        async def expire(conn):
            async with conn.transaction():
                return await expire_due_in(conn, default_webhook_url)

        return await self.db.run(expire)

    async def next_expiry(self) -> datetime | None:
        return await self.db.run(lambda conn: conn.fetchval(
            "SELECT min(expires_at) FROM masking_sessions WHERE status = 'active'"))

    # -- keys ----------------------------------------------------------------------
    async def reseal(self, batch: int = 500) -> int:
        """Re-seal up to `batch` sessions' numbers sealed under a key that is not
        the active one; returns how many. Run until 0 after a new key is activated."""
        keys = self.db.keys

        async def reseal(conn):
            async with conn.transaction():
                rows = await conn.fetch(
                    "SELECT * FROM masking_sessions WHERE key_id <> $1 LIMIT $2 FOR UPDATE SKIP LOCKED",
                    keys.active_id, batch)
                await conn.executemany(
                    "UPDATE masking_sessions SET participant_a_sealed = $2, participant_b_sealed = $3, key_id = $4"
                    " WHERE id = $1",
                    [(r["id"], *seal_participants(keys, r["id"], *self._numbers(r))[2:]) for r in rows])
                return len(rows)

        return await self.db.run(reseal)

    async def rows_by_key(self) -> dict[str, int]:
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT key_id, count(*) FROM masking_sessions WHERE key_id IS NOT NULL GROUP BY key_id"))
        return {r["key_id"]: r["count"] for r in rows}

    def _numbers(self, row: asyncpg.Record) -> tuple[str, str]:
        session = self._session(row)
        return session.participant_a, session.participant_b
