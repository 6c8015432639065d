"""The pool's utilisation over time (`pool_samples`): counts sampled every few
minutes by the console's sampler, read back for its chart. Counts only."""
from __future__ import annotations

from datetime import datetime

from bridge.store.db import Database
from bridge.store.numbers import Numbers

KEEP_DAYS = 90
SAMPLED = ("active", "in_use", "reserved", "shared", "quarantined")


class PoolHistory:
    """`store.pool_history`."""

    def __init__(self, db: Database, numbers: Numbers):
        self.db, self.numbers = db, numbers

    async def record(self, period_seconds: int, quarantine_seconds: int) -> None:
        """Sample the pool now, as the row of the current period (one row per
        period whoever samples: a second sampler's row is dropped), and forget
        samples older than KEEP_DAYS."""
        summary = await self.numbers.summary(quarantine_seconds)

        async def record(conn):
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO pool_samples (at, active, in_use, reserved, shared, quarantined)"
                    " VALUES (to_timestamp(floor(extract(epoch FROM now()) / $1) * $1), $2, $3, $4, $5, $6)"
                    " ON CONFLICT (at) DO NOTHING", period_seconds, *(summary[name] for name in SAMPLED))
                await conn.execute("DELETE FROM pool_samples WHERE at < now() - make_interval(days => $1)",
                                   KEEP_DAYS)

        await self.db.run(record)

    async def since(self, start: datetime) -> list[dict]:
        """Samples from `start` on, oldest first."""
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT * FROM pool_samples WHERE at >= $1 ORDER BY at", start))
        return [dict(r) for r in rows]
