"""Wrong PINs across calls (`pin_failures`): read a caller's and a number's
counts, and add a failure to both under a row lock (the rules are pure:
bridge/sessions/pin_guard.py). A caller is keyed by their number's keyed hash.

During a lookup-key rotation a caller's row may still be under an older key:
reads match every key in use, and the next failure moves the row (merged, if
both exist) to the active key (bridge/store/lookup_keys.py)."""
from __future__ import annotations

from datetime import datetime

import asyncpg

from bridge.privacy.lookup import LookupKeys
from bridge.sessions.pin_guard import WITHHELD, FailureCount, GuardLimits, after_failure, combined
from bridge.store.db import Database

_COLUMNS = "failures, window_started, lockouts, locked_until"


class PinFailures:
    """`store.pin_failures`."""

    def __init__(self, db: Database):
        self.db = db

    def caller_key(self, caller: str | None) -> str:
        return self.caller_keys(caller)[0]

    def caller_keys(self, caller: str | None, lookup: LookupKeys | None = None) -> list[str]:
        """The caller's key under every lookup key in use, the active one first."""
        lookup = lookup or self.db.keys.lookups()
        return [h.hex() for h in lookup.hashes(caller)] if caller else [WITHHELD]

    async def counts(self, caller: str | None, number: str) -> tuple[FailureCount, FailureCount, bool]:
        """(the caller's count, the number's count, whether the caller holds a live session on the number)."""
        caller_hashes = self.db.keys.lookup_hashes(caller) if caller else None

        async def read(conn):
            rows = await conn.fetch(f"SELECT scope, {_COLUMNS} FROM pin_failures"
                                    " WHERE (scope = 'caller' AND key = ANY($1)) OR (scope = 'number' AND key = $2)",
                                    self.caller_keys(caller), number)
            holds = caller_hashes is not None and await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM session_participants WHERE virtual_number = $1"
                " AND number_hash = ANY($2) AND live)", number, caller_hashes)
            number_rows = [_count(r) for r in rows if r["scope"] == "number"]
            return (combined([_count(r) for r in rows if r["scope"] == "caller"]),
                    number_rows[0] if number_rows else FailureCount(), holds)

        return await self.db.lookup(read)

    async def record(self, caller: str | None, number: str, limits: GuardLimits,
                     now: datetime) -> tuple[FailureCount, FailureCount]:
        """One more wrong PIN from `caller` on `number`; returns both counts after it."""
        lookup = self.db.keys.lookups()  # one reading: the caller's key and its label agree
        keys, lookup_key_id = self.caller_keys(caller, lookup), lookup.active if caller else None

        async def add(conn):
            async with conn.transaction():
                if caller:
                    await _move_to_active(conn, keys, lookup_key_id)
                caller_count = await _add_failure(conn, "caller", keys[0], limits.caller_failures,
                                                  limits, now, lookup_key_id)
                number_count = await _add_failure(conn, "number", number, limits.number_failures, limits, now)
                return caller_count, number_count

        return await self.db.run(add)

    async def clear_caller(self, caller: str | None) -> None:
        """A right PIN: the caller's count starts again (its lockout history stays)."""
        await self.db.run(lambda conn: conn.execute(
            "UPDATE pin_failures SET failures = 0 WHERE scope = 'caller' AND key = ANY($1)", self.caller_keys(caller)))


async def _move_to_active(conn: asyncpg.Connection, keys: list[str], lookup_key_id: str) -> None:
    """A caller's rows under older lookup keys become one row under the active key."""
    rows = await conn.fetch(f"SELECT key, {_COLUMNS} FROM pin_failures WHERE scope = 'caller' AND key = ANY($1)"
                            " ORDER BY key FOR UPDATE", keys)
    if not any(r["key"] != keys[0] for r in rows):
        return
    merged = combined([_count(r) for r in rows])
    await conn.execute("DELETE FROM pin_failures WHERE scope = 'caller' AND key = ANY($1)", keys)
    await conn.execute("INSERT INTO pin_failures (scope, key, failures, window_started, lockouts, locked_until,"
                       " lookup_key_id) VALUES ('caller', $1, $2, $3, $4, $5, $6)", keys[0], merged.failures,
                       merged.window_started, merged.lockouts, merged.locked_until, lookup_key_id)


async def _add_failure(conn: asyncpg.Connection, scope: str, key: str, limit: int, limits: GuardLimits,
                       now: datetime, lookup_key_id: str | None = None) -> FailureCount:
    await conn.execute("INSERT INTO pin_failures (scope, key, lookup_key_id) VALUES ($1, $2, $3)"
                       " ON CONFLICT DO NOTHING", scope, key, lookup_key_id)
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM pin_failures WHERE scope = $1 AND key = $2 FOR UPDATE",
                              scope, key)
    count = after_failure(_count(row), limit, limits, now)
    await conn.execute("UPDATE pin_failures SET failures = $3, window_started = $4, lockouts = $5, locked_until = $6"
                       " WHERE scope = $1 AND key = $2", scope, key, count.failures, count.window_started,
                       count.lockouts, count.locked_until)
    return count


def _count(row: asyncpg.Record) -> FailureCount:
    return FailureCount(row["failures"], row["window_started"], row["lockouts"], row["locked_until"])
