"""Each Asterisk node's lease: a PostgreSQL advisory lock, held on a connection
of its own, so a second bridge for the same node waits as a standby instead of
stealing its calls.

The lock lives as long as its connection: a database restart or a primary
change (a multi-host DSN with target_session_attrs=read-write moves to the new
primary) ends it. `keep` notices and takes it again once a primary answers.
"""
from __future__ import annotations

import asyncio
import enum

import asyncpg

from bridge.logs import get_logger
from bridge.store.db import UNAVAILABLE

log = get_logger("bridge.lease")


class Outcome(enum.Enum):
    TAKEN = "taken"
    HELD_ELSEWHERE = "held_elsewhere"
    UNREACHABLE = "unreachable"


class NodeLease:
    def __init__(self, dsn: str, key: str, timeout: float, check_interval: float = 2.0):
        self.dsn, self.key, self.timeout, self.check_interval = dsn, key, timeout, check_interval
        self._conn: asyncpg.Connection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def acquire(self) -> None:
        """Take the lease, waiting as a standby while another bridge holds it.

        With the database unreachable this returns without it (and says so):
        callers are better served by prompts than by no service; `keep` takes
        it when the database is back.
        """
        while True:
            outcome = await self._try()
            if outcome is Outcome.TAKEN:
                log.info("lease.acquired")
                return
            if outcome is Outcome.UNREACHABLE:
                log.warning("lease.database_unavailable")
                return
            log.info("lease.standby")
            await asyncio.sleep(1)

    async def keep(self) -> None:
        """Forever: check the lease's connection, take the lease again when it was lost."""
        reported = None
        while True:
            await asyncio.sleep(self.check_interval)
            if self.held and await self._alive():
                continue
            if self._conn is not None:
                log.warning("lease.lost")
                self._conn.terminate()
                self._conn = None
            outcome = await self._try()
            if outcome is Outcome.TAKEN:
                log.info("lease.reacquired")
            elif outcome is not reported:
                log.warning("lease.not_held", reason=outcome.value)
            reported = outcome

    async def release(self) -> None:
        if self._conn is not None:
            try:
                await asyncio.wait_for(self._conn.close(), self.timeout)
            except (*UNAVAILABLE, asyncpg.PostgresError):
                self._conn.terminate()
            self._conn = None

    async def _alive(self) -> bool:
        try:
            await asyncio.wait_for(self._conn.fetchval("SELECT 1"), self.timeout)
            return True
        except (*UNAVAILABLE, asyncpg.PostgresError):
            return False

    async def _try(self) -> Outcome:
        try:
            conn = await asyncpg.connect(self.dsn, timeout=self.timeout)
        except (*UNAVAILABLE, asyncpg.PostgresError):
            return Outcome.UNREACHABLE
        try:
            taken = await asyncio.wait_for(
                conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", self.key), self.timeout)
        except (*UNAVAILABLE, asyncpg.PostgresError):
            conn.terminate()
            return Outcome.UNREACHABLE
        if not taken:
            await conn.close()
            return Outcome.HELD_ELSEWHERE
        self._conn = conn
        return Outcome.TAKEN
