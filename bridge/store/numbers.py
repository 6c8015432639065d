"""The virtual-number pool's SQL (`virtual_numbers`): adding, listing and
retiring numbers, and the candidates an allocation ranks (the ranking itself
is pure: bridge/sessions/pool.py)."""
from __future__ import annotations

import uuid

import asyncpg

from bridge.numbering import mask_number
from bridge.privacy.audit import Actor
from bridge.sessions.pool import Candidate, region_of
from bridge.store.audit import AuditTrail
from bridge.store.db import Database
from bridge.store.errors import NotFound, NumberAlreadyInPool, NumberInUse, NumberUnavailable
from bridge.store.expiry import expire_due_in
from bridge.store.outbox import Outbox

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

_POOL_SUMMARY = """
    SELECT count(*) FILTER (WHERE status = 'active') AS active,
           count(*) FILTER (WHERE status = 'retired') AS retired,
           count(*) FILTER (WHERE status = 'active' AND in_use) AS in_use,
           count(*) FILTER (WHERE status = 'active' AND reserved) AS reserved,
           count(*) FILTER (WHERE status = 'active' AND pin_mode) AS shared,
           count(*) FILTER (WHERE status = 'active' AND NOT reserved AND NOT pin_mode AND NOT in_use
                            AND NOT released) AS free,
           count(*) FILTER (WHERE status = 'active' AND NOT reserved AND NOT pin_mode AND NOT in_use
                            AND released) AS quarantined,
           coalesce(sum(live_sessions) FILTER (WHERE status = 'active' AND pin_mode), 0) AS shared_sessions
    FROM (SELECT v.status, v.reserved, v.pin_mode,
                 EXISTS (SELECT 1 FROM session_participants p WHERE p.virtual_number = v.number AND p.live) AS in_use,
                 EXISTS (SELECT 1 FROM session_participants p WHERE p.virtual_number = v.number AND NOT p.live
                         AND p.ended_at > now() - make_interval(secs => $1)) AS released,
                 (SELECT count(DISTINCT p.session_id) FROM session_participants p
                  WHERE p.virtual_number = v.number AND p.live) AS live_sessions
          FROM virtual_numbers v) AS numbers
"""


async def check_not_held(conn: asyncpg.Connection, holders: list[tuple[str, list[bytes]]]) -> None:
    """NumberInUse if a participant already holds the number live (outside PIN
    sessions), under any of their hashes: the unique index on live participants
    compares one hash, and during a lookup-key rotation a row may hold an older one."""
    for number, hashes in holders:
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM session_participants WHERE virtual_number = $1"
                               " AND number_hash = ANY($2) AND live AND NOT pinned)", number, hashes):
            raise NumberInUse("a participant already holds this virtual number in a live session")


async def check_assignable(conn: asyncpg.Connection, number: str, field: str = "virtual_number") -> None:
    """An explicitly requested number must be in the pool and not retired."""
    status = await conn.fetchval("SELECT status FROM virtual_numbers WHERE number = $1", number)
    if status != "active":
        raise NumberUnavailable("that virtual number is not in the pool" if status is None
                                else "that virtual number is retired", field=field)


async def free_numbers(conn: asyncpg.Connection, holders: list[bytes], pair: list[bytes],
                       quarantine_seconds: int) -> list[Candidate]:
    """The pool's candidates for `holders` (keyed hashes), in the caller's transaction."""
    rows = await conn.fetch(_FREE_NUMBERS, holders, pair, quarantine_seconds)
    return [Candidate(r["number"], r["country"], r["last_allocated_at"], r["held_before"], r["quarantined"])
            for r in rows]


async def allocatable_count(conn: asyncpg.Connection) -> int:
    """Numbers an allocation may ever take (active, not reserved), free or not."""
    return await conn.fetchval("SELECT count(*) FROM virtual_numbers WHERE status = 'active' AND NOT reserved")


class Numbers:
    """`store.numbers`: the pool operators manage."""

    def __init__(self, db: Database, audit: AuditTrail, outbox: Outbox, default_webhook_url: str | None = None):
        self.db, self.audit, self.outbox, self.default_webhook_url = db, audit, outbox, default_webhook_url

    async def add(self, number: str, reserved: bool = False, *, by: Actor | None = None,
                  pin_mode: bool = False) -> dict:
        """Add to the pool; `by` writes the number.added audit row in the same transaction."""

        async def add(conn):
            async with conn.transaction():
                row = await conn.fetchrow(
                    "INSERT INTO virtual_numbers (number, reserved, country, pin_mode) VALUES ($1, $2, $3, $4)"
                    " RETURNING *", number, reserved, region_of(number), pin_mode)
                if by:
                    await self.audit.append_by(by, "number.added", "number", mask_number(number), conn,
                                               subject_hash=self.db.keys.lookup_hash(number),
                                               details={"reserved": reserved, "pin_mode": pin_mode})
                return row

        try:
            row = await self.db.run(add)
        except asyncpg.UniqueViolationError:
            raise NumberAlreadyInPool(f"{number} is already in the pool") from None
        return dict(row) | {"live_sessions": 0}

    async def list(self, status: str | None = None) -> list[dict]:
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT v.*, (SELECT count(DISTINCT p.session_id) FROM session_participants p"
            "  WHERE p.virtual_number = v.number AND p.live) AS live_sessions"
            " FROM virtual_numbers v WHERE $1::text IS NULL OR v.status = $1 ORDER BY v.number", status))
        return [dict(r) for r in rows]

    async def retire(self, number: str, *, by: Actor | None = None) -> None:
        """Take a number out of the pool; refused while live sessions use it."""

        async def retire(conn):
            async with conn.transaction():
                row = await conn.fetchrow("SELECT status FROM virtual_numbers WHERE number = $1 FOR UPDATE", number)
                if row is None:
                    raise NotFound("no such number in the pool")
                if row["status"] == "retired":
                    return  # nothing changes, so nothing to audit
                expired[:] = await expire_due_in(conn, self.default_webhook_url, notify=False)
                users = await conn.fetch(
                    "SELECT DISTINCT session_id FROM session_participants WHERE virtual_number = $1 AND live",
                    number)
                if users:
                    ids = [str(r["session_id"]) for r in users]
                    raise NumberInUse(f"{len(ids)} live session(s) use this number", ids)
                await conn.execute("UPDATE virtual_numbers SET status = 'retired' WHERE number = $1", number)
                if by:
                    await self.audit.append_by(by, "number.retired", "number", mask_number(number), conn,
                                               subject_hash=self.db.keys.lookup_hash(number))

        expired: list[uuid.UUID] = []
        await self.db.run(retire)
        if expired:
            self.outbox.told()  # their session.expired events are committed (a refusal rolls them back)

    async def pool_counts(self) -> dict:
        row = await self.db.run(lambda conn: conn.fetchrow(
            "SELECT count(*) FILTER (WHERE v.status = 'active') AS active,"
            " count(*) FILTER (WHERE v.status = 'active' AND EXISTS (SELECT 1 FROM session_participants p"
            "   WHERE p.virtual_number = v.number AND p.live)) AS in_use FROM virtual_numbers v"))
        return dict(row)

    async def summary(self, quarantine_seconds: int) -> dict[str, int]:
        """The pool by kind of number. `free`: what an allocation may hand out
        now; `quarantined`: free, but released within the quarantine, so its
        last holders will not get it again yet (sessions/pool.py); `shared`:
        pin_mode numbers, holding `shared_sessions` live sessions between them."""
        row = await self.db.run(lambda conn: conn.fetchrow(_POOL_SUMMARY, quarantine_seconds))
        return {name: int(value) for name, value in row.items()}
