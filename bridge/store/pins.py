"""The SQL of shared (pin_mode) numbers: choosing one for a session, giving
the session a PIN, and finding the session a caller's PIN names.

PIN choice itself is pure (bridge/sessions/pins.py); here it runs under a
per-number advisory lock, so two sessions created at once never pick the same
PIN, and the partial unique index `masking_sessions_one_live_pin` is the
guarantee underneath.
"""
from __future__ import annotations

import asyncpg

from bridge.sessions.models import SessionRequest
from bridge.sessions.pins import PinLookup, choose_pin, pin_space
from bridge.store.consent import WITHDRAWN, rotation_safe
from bridge.store.db import Database
from bridge.store.errors import NumberInUse, NumberUnavailable, PoolExhausted
from bridge.store.rows import session_from_row


async def allocate_pin_number(conn: asyncpg.Connection, request: SessionRequest) -> str:
    """The shared number with the fewest live sessions that still has a free PIN.

    No lock here: only the chosen number's PIN lock is taken (by `assign_pin`),
    so two creates never hold two numbers' locks in different orders."""
    row = await conn.fetchrow(
        "SELECT count(*) AS shared, (SELECT v.number FROM virtual_numbers v"
        "  WHERE v.status = 'active' AND NOT v.reserved AND v.pin_mode"
        "  AND (SELECT count(*) FROM masking_sessions s WHERE s.virtual_number = v.number AND s.pin IS NOT NULL"
        "       AND length(s.pin) = $1 AND (s.status = 'active'"
        "            OR coalesce(s.closed_at, s.expires_at) > now() - make_interval(secs => $2))) < $3"
        "  ORDER BY (SELECT count(*) FROM masking_sessions s WHERE s.virtual_number = v.number"
        "   AND s.status = 'active'), v.last_allocated_at NULLS FIRST, v.number LIMIT 1) AS number"
        " FROM virtual_numbers WHERE status = 'active' AND NOT reserved AND pin_mode",
        request.pin_length, request.pin_quarantine_seconds, pin_space(request.pin_length))
    if row["number"] is None:
        raise PoolExhausted(0, row["shared"])
    return row["number"]


async def free_pin(conn: asyncpg.Connection, number: str, request: SessionRequest) -> str | None:
    """A free PIN on `number`, holding the number's PIN lock to the end of the transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "pin:" + number)
    # Live sessions (even ones past their time the expiry pass has not
    # reached: the unique index still counts them) and ones that ended
    # within the quarantine.
    taken = await conn.fetch(
        "SELECT pin FROM masking_sessions WHERE virtual_number = $1 AND pin IS NOT NULL AND length(pin) = $2"
        " AND (status = 'active' OR coalesce(closed_at, expires_at) > now() - make_interval(secs => $3))",
        number, request.pin_length, request.pin_quarantine_seconds)
    return choose_pin({r["pin"] for r in taken}, request.pin_length)


async def assign_pin(conn: asyncpg.Connection, row: asyncpg.Record, request: SessionRequest) -> asyncpg.Record:
    """Give a new session on a shared number its PIN (other sessions pass through)."""
    number, number_b = row["virtual_number"], row["virtual_number_b"]
    shared = await conn.fetch("SELECT number FROM virtual_numbers WHERE pin_mode AND number = ANY($1)",
                              [number, number_b])
    if not shared:
        return row
    if number_b is not None:  # two numbers, one per participant; a PIN names a session on one
        raise NumberUnavailable("a shared (pin_mode) number cannot serve a per_participant session",
                                field="virtual_number" if shared[0]["number"] == number else "virtual_number_b")
    pin = await free_pin(conn, number, request)
    if pin is None:
        raise PoolExhausted(0, 1)
    try:
        async with conn.transaction():
            return await conn.fetchrow(
                "UPDATE masking_sessions SET pin = $2, pin_unknown_callers = $3 WHERE id = $1 RETURNING *",
                row["id"], pin, request.pin_unknown_callers)
    except asyncpg.UniqueViolationError:
        raise NumberInUse("that PIN is in use on this number") from None


class Pins:
    """`store.pins`: the call path's question on a shared number."""

    def __init__(self, db: Database):
        self.db = db

    async def lookup(self, virtual_number: str, pin: str) -> PinLookup:
        """The sessions on a shared number that held `pin`, newest first (the
        live one, if any, and the most recent that ended)."""
        async def query(conn):
            rows = await conn.fetch(
                f"SELECT *, {WITHDRAWN} AS withdrawn FROM masking_sessions WHERE virtual_number = $1 AND pin = $2"
                " ORDER BY status = 'active' DESC, created_at DESC LIMIT 2", virtual_number, pin)
            return PinLookup(await rotation_safe(conn, self.db.keys,
                                                 tuple(session_from_row(self.db.keys, r) for r in rows)))

        return await self.db.lookup(query)
