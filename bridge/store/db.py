"""The connection pools every query module shares, and the one rule of the call
path: each query is bounded by `timeout`, and a database that is down or slow
surfaces as `StoreUnavailable`, which the call flow turns into a prompt.

Two pools: `pool` for everything that writes (call rows, the API, the sweeps)
and a small `lookup_pool` that only routes arriving calls. Under load a
hundred calls' row writers queue for `pool`; a lookup that queued behind them
would time out and turn the caller away, so it never does."""
from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any, Awaitable, Callable

import asyncpg

from bridge.privacy.crypto import KeyRing
from bridge.store.errors import StoreUnavailable

UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.OperatorInterventionError,  # admin shutdown, fast restart, terminated backend
    asyncpg.InsufficientResourcesError,
    asyncpg.ReadOnlySQLTransactionError,  # a failover in progress
    # A multi-host DSN with target_session_attrs=read-write whose hosts all
    # answer but none accepts writes (the old primary fenced, the replica not
    # yet promoted): no primary, the same as none answering.
    asyncpg.TargetServerAttributeNotMatched,
)


class Database:
    """A pool, the keys that seal the numbers in its rows, and the time any one
    operation may take."""

    def __init__(self, pool: asyncpg.Pool, keys: KeyRing, timeout: float, lookup_pool: asyncpg.Pool | None = None):
        self.pool = pool
        self.lookup_pool = lookup_pool or pool
        self.keys = keys  # numbers are sealed and hashed with these (bridge/privacy/crypto.py)
        self.timeout = timeout

    async def run(self, operation: Callable[[asyncpg.Connection], Awaitable[Any]],
                  timeout: float | None = None) -> Any:
        """`operation(conn)` on a pooled connection within `timeout` seconds (the
        store's own by default; retention's batches give theirs); an unreachable
        database is StoreUnavailable. `operation` awaits only its own queries:
        a connection held across anything else is one a call cannot have."""
        return await self._on(self.pool, operation, self.timeout if timeout is None else timeout)

    async def lookup(self, operation: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        """A read that routes an arriving call, on the lookup pool: it waits for
        other lookups at most, never for row writes."""
        return await self._on(self.lookup_pool, operation, self.timeout)

    @staticmethod
    async def _on(pool: asyncpg.Pool, operation: Callable[[asyncpg.Connection], Awaitable[Any]],
                  timeout: float) -> Any:
        try:
            async with asyncio.timeout(timeout):
                async with pool.acquire() as conn:
                    return await operation(conn)
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from None


async def ensure_database(dsn: str) -> bool:
    """Create the database named in `dsn` if it does not exist; True if created."""
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
