"""Wrong PINs across calls (`pin_failures`): read a caller's and a number's
counts, and add a failure to both under a row lock (the rules are pure:
bridge/sessions/pin_guard.py). A caller is keyed by their number's keyed hash."""
from __future__ import annotations

from datetime import datetime

import asyncpg

from bridge.sessions.pin_guard import WITHHELD, FailureCount, GuardLimits, after_failure
from bridge.store.db import Database

_COLUMNS = "failures, window_started, lockouts, locked_until"


class PinFailures:
    """`store.pin_failures`."""

    def __init__(self, db: Database):
        self.db = db

    def caller_key(self, caller: str | None) -> str:
        return self.db.keys.lookup_hash(caller).hex() if caller else WITHHELD

    async def counts(self, caller: str | None, number: str) -> tuple[FailureCount, FailureCount, bool]:
        """(the caller's count, the number's count, whether the caller holds a live session on the number)."""
        caller_hash = self.db.keys.lookup_hash(caller) if caller else None

        async def read(conn):
            rows = await conn.fetch(f"SELECT scope, {_COLUMNS} FROM pin_failures"
                                    " WHERE (scope, key) IN (('caller', $1), ('number', $2))",
                                    self.caller_key(caller), number)
            holds = caller_hash is not None and await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM session_participants WHERE virtual_number = $1 AND number_hash = $2"
                " AND live)", number, caller_hash)
            found = {r["scope"]: _count(r) for r in rows}
            return found.get("caller", FailureCount()), found.get("number", FailureCount()), holds

        return await self.db.lookup(read)

    async def record(self, caller: str | None, number: str, limits: GuardLimits,
                     now: datetime) -> tuple[FailureCount, FailureCount]:
        """One more wrong PIN from `caller` on `number`; returns both counts after it."""
        async def add(conn):
            async with conn.transaction():
                counted = []
                for scope, key, limit in (("caller", self.caller_key(caller), limits.caller_failures),
                                          ("number", number, limits.number_failures)):
                    counted.append(await _add_failure(conn, scope, key, limit, limits, now))
                return counted[0], counted[1]

        return await self.db.run(add)

    async def clear_caller(self, caller: str | None) -> None:
        """A right PIN: the caller's count starts again (its lockout history stays)."""
        await self.db.run(lambda conn: conn.execute(
            "UPDATE pin_failures SET failures = 0 WHERE scope = 'caller' AND key = $1", self.caller_key(caller)))


async def _add_failure(conn: asyncpg.Connection, scope: str, key: str, limit: int, limits: GuardLimits,
                       now: datetime) -> FailureCount:
    await conn.execute("INSERT INTO pin_failures (scope, key) VALUES ($1, $2) ON CONFLICT DO NOTHING", scope, key)
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM pin_failures WHERE scope = $1 AND key = $2 FOR UPDATE",
                              scope, key)
    count = after_failure(_count(row), limit, limits, now)
    await conn.execute("UPDATE pin_failures SET failures = $3, window_started = $4, lockouts = $5, locked_until = $6"
                       " WHERE scope = $1 AND key = $2", scope, key, count.failures, count.window_started,
                       count.lockouts, count.locked_until)
    return count


def _count(row: asyncpg.Record) -> FailureCount:
    return FailureCount(row["failures"], row["window_started"], row["lockouts"], row["locked_until"])
