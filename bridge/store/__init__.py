"""PostgreSQL: one module of SQL per domain, and `Store`, the facade that hands
them out over one pool.

Each module speaks SQL for its own tables only (numbers, sessions, calls,
recordings and their keys, API keys, the webhook outbox, the audit trail,
retention, erasure, legal holds, breach incidents, subjects, PINs, wait audio, the console's
sign-ins, the pool's history, the schema and the database roles).
`Store` is deliberately thin: it opens the pools (bridge/store/db.py) and gives each domain's
queries their dependencies once, so a caller names the domain it talks to
(`store.sessions.create(...)`, `store.audit.list(...)`) and a reader can see
which part of the system owns which table. Queries that must commit together
across domains (an audit row with the change it records, a webhook event with
the expiry it reports) take the caller's connection (`conn=`, `*_in(conn, ...)`).

Every call-path query is bounded by the store's `timeout`; a database that is
down or slow surfaces as `StoreUnavailable` (bridge/store/errors.py), which the
call flow turns into a prompt.
"""
from __future__ import annotations

import asyncpg

from bridge.privacy.crypto import KeyRing
from bridge.store.apikeys import ApiKeys
from bridge.store.audit import AuditTrail
from bridge.store.calls import Calls
from bridge.store.consent import Consent
from bridge.store.console_sessions import ConsoleSessions
from bridge.store.db import Database
from bridge.store.corrections import Corrections
from bridge.store.disclosures import Disclosures
from bridge.store.erasure import Erasure
from bridge.store.holds import LegalHolds
from bridge.store.incidents import Incidents
from bridge.store.lookup_keys import LookupKeyRows
from bridge.store.numbers import Numbers
from bridge.store.outbox import Outbox, OutboxListener
from bridge.store.pin_failures import PinFailures
from bridge.store.pins import Pins
from bridge.store.pool_history import PoolHistory
from bridge.store.recordings import Recordings
from bridge.store.retention import Retention
from bridge.store.roles import Roles
from bridge.store.schema import Schema
from bridge.store.sessions import Sessions
from bridge.store.subjects import Subjects
from bridge.store.wait_audio import WaitAudio


# How the bridge's connections show in pg_stat_activity, for the DBA.
APPLICATION_NAME = "masking-bridge"


class Store:
    """Every domain's queries over one pool."""

    def __init__(self, pool: asyncpg.Pool, keys: KeyRing, timeout: float, lookup_pool: asyncpg.Pool | None = None,
                 dsn: str | None = None, default_webhook_url: str | None = None):
        self.db = Database(pool, keys, timeout, lookup_pool)
        self.dsn = dsn  # for a connection of its own outside the pools (the outbox's LISTEN)
        self.audit = AuditTrail(self.db)
        self.disclosures = Disclosures(self.db, self.audit)
        self.schema = Schema(self.db)
        self.roles = Roles(self.db)
        self.outbox = Outbox(self.db)
        self.numbers = Numbers(self.db, self.audit, self.outbox, default_webhook_url)
        self.sessions = Sessions(self.db, self.outbox, default_webhook_url)
        self.pins = Pins(self.db)
        self.pin_failures = PinFailures(self.db)
        self.calls = Calls(self.db)
        self.recordings = Recordings(self.db)
        self.wait_audio = WaitAudio(self.db)
        self.api_keys = ApiKeys(self.db, self.audit)
        self.subjects = Subjects(self.db, self.audit)
        self.consent = Consent(self.db, self.audit, self.subjects)
        self.holds = LegalHolds(self.db, self.audit)
        self.incidents = Incidents(self.db, self.audit)
        self.retention = Retention(self.db, self.audit)
        self.erasure = Erasure(self.db, self.audit, self.subjects, self.retention)
        self.corrections = Corrections(self.db, self.audit, self.subjects)
        self.console_sessions = ConsoleSessions(self.db)
        self.pool_history = PoolHistory(self.db, self.numbers)
        self.lookup_keys = LookupKeyRows(self.db)

    @classmethod
    async def connect(cls, dsn: str, keys: KeyRing, timeout: float = 2.0, max_size: int = 10,
                      lookup_size: int = 4, outbox_notify: bool = True,
                      default_webhook_url: str | None = None) -> "Store":
        """`max_size` connections for writes and everything else, `lookup_size`
        more that only route arriving calls (MASKING_DB_POOL_SIZE, MASKING_DB_LOOKUP_POOL_SIZE).
        `outbox_notify=False`: webhook events this process writes do not NOTIFY
        (migration 0035); it tells its own dispatcher (`Outbox.on_due`).
        `default_webhook_url`: MASKING_WEBHOOK_URL, for a session without a URL
        of its own that a create or a retirement finds expired."""
        settings = {"application_name": APPLICATION_NAME}
        if not outbox_notify:
            settings["masking.outbox_notify"] = "off"
        # min_size=0: the service starts (and answers callers with a prompt)
        # even when the database is down; a pool never used opens nothing.
        pools = [await asyncpg.create_pool(
            dsn, min_size=0, max_size=size, timeout=timeout, command_timeout=timeout,
            server_settings=settings, reset=_rolled_back_suffices,
        ) for size in (max_size, lookup_size)]
        return cls(pools[0], keys, timeout, lookup_pool=pools[1], dsn=dsn, default_webhook_url=default_webhook_url)

    def outbox_listener(self, on_due) -> OutboxListener:
        """The outbox's LISTEN connection (bridge/webhooks.py)."""
        return OutboxListener(self.dsn, on_due, APPLICATION_NAME)

    @property
    def pool(self) -> asyncpg.Pool:
        return self.db.pool

    @property
    def keys(self) -> KeyRing:
        """The keys that seal and hash numbers (bridge/privacy/crypto.py)."""
        return self.db.keys

    @property
    def timeout(self) -> float:
        return self.db.timeout

    async def ping(self) -> None:
        await self.db.run(lambda conn: conn.fetchval("SELECT 1"))

    async def close(self) -> None:
        await self.db.pool.close()
        if self.db.lookup_pool is not self.db.pool:
            await self.db.lookup_pool.close()


async def _rolled_back_suffices(_conn: asyncpg.Connection) -> None:
    """A released connection's reset: asyncpg has already rolled back any
    open transaction. Its default reset adds a statement to every release
    (advisory locks, cursors, LISTEN, RESET ALL), doubling the round trips of
    a call's one-statement row writes, for state nothing here leaves
    on a pooled connection: no LISTEN, SET or cursor outside a transaction;
    the migration lock is released (or its connection closed) by `Schema`,
    the node lease has a connection of its own."""
