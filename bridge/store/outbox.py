"""The webhook outbox's SQL (`webhook_outbox`): events written with the change
they report, then claimed, delivered, retried or dead-lettered by the sender
(bridge/webhooks.py). An event is its session's account's: the API lists and
retries only the key's own (`owned_by`, bridge/store/apikeys.py)."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Awaitable, Callable

import asyncpg

from bridge.clock import utcnow
from bridge.store.apikeys import owned_by
from bridge.store.db import UNAVAILABLE, Database

NOTIFY_CHANNEL = "masking_webhook_outbox"  # migration 0035: an event became due


async def enqueue_in(conn: asyncpg.Connection, event_type: str, session_id: uuid.UUID | None, url: str,
                     data: dict, event_id: uuid.UUID | None = None, *, notify: bool = True) -> None:
    """An event, in the caller's transaction (it commits with what it reports).

    `notify`: that commit tells the dispatchers (NOTIFY, migration 0035), even
    on the service's connections, which otherwise keep quiet, for events
    written where no code of the service runs after the commit (the expiry
    timer, a correction, a purge). A path that can wake its own process's
    sender after committing (`Outbox.told`) passes False: a notifying commit
    takes a lock every notifying commit of the cluster shares."""
    if not conn.is_in_transaction():
        raise RuntimeError("enqueue_in: write the event in the transaction of what it reports")
    if notify:
        await notify_on_commit(conn)
    await _insert(conn, event_type, session_id, url, data, event_id)


async def notify_on_commit(conn: asyncpg.Connection) -> None:
    """The events this transaction writes NOTIFY when it commits (once is enough)."""
    await conn.execute("SET LOCAL masking.outbox_notify = on")


# An event's row, its values $1-$5 (`event_values`); idempotent for its event_id.
INSERT_EVENT = ("INSERT INTO webhook_outbox (event_id, event_type, session_id, url, payload)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING")


def event_values(event_type: str, session_id: uuid.UUID | None, url: str, data: dict,
                 event_id: uuid.UUID | None = None) -> tuple:
    """INSERT_EVENT's values: the event as the receiver gets it (its body, signed at delivery)."""
    event_id = event_id or uuid.uuid4()
    payload = {"id": str(event_id), "type": event_type, "created_at": utcnow().isoformat(), "data": data}
    return event_id, event_type, session_id, url, json.dumps(payload)


async def _insert(conn: asyncpg.Connection, event_type: str, session_id: uuid.UUID | None, url: str,
                  data: dict, event_id: uuid.UUID | None) -> None:
    await conn.execute(INSERT_EVENT, *event_values(event_type, session_id, url, data, event_id))


class Outbox:
    """`store.outbox`: signed call and session events waiting for delivery."""

    def __init__(self, db: Database):
        self.db = db
        # This process's dispatcher, told of an event it wrote once that is committed.
        self.on_due: Callable[[], None] | None = None

    async def enqueue(self, event_type: str, session_id: uuid.UUID | None, url: str, data: dict,
                      event_id: uuid.UUID | None = None) -> None:
        """Idempotent for a given `event_id`: a retried write is not a second event."""
        await self.db.run(lambda conn: _insert(conn, event_type, session_id, url, data, event_id))
        self.told()

    def told(self) -> None:
        """Events this process committed are due: wake its sender (if it runs one)."""
        if self.on_due is not None:
            self.on_due()

    async def due(self, limit: int = 20) -> list[dict]:
        """Pending deliveries whose time has come, claimed for 60 s so that two
        workers never send the same event at once; each with its session's purpose."""
        rows = await self.db.run(lambda conn: conn.fetch(
            "UPDATE webhook_outbox SET next_attempt_at = now() + interval '60 seconds'"
            " WHERE id IN (SELECT id FROM webhook_outbox WHERE status = 'pending' AND next_attempt_at <= now()"
            "  ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)"
            " RETURNING *, (SELECT s.purpose FROM masking_sessions s WHERE s.id = webhook_outbox.session_id)"
            " AS purpose", limit))
        return [dict(r) for r in rows]

    async def delivered(self, outbox_ids: list[int],
                        also: Callable[[asyncpg.Connection], Awaitable[object]] | None = None) -> None:
        """Mark them delivered; `also` runs in the same transaction (the ledger's rows of the deliveries)."""

        async def mark(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute(
                    "UPDATE webhook_outbox SET status = 'delivered', delivered_at = now(), attempts = attempts + 1,"
                    " last_error = NULL WHERE id = ANY($1::bigint[])", outbox_ids)
                if also is not None:
                    await also(conn)

        await self.db.run(mark)

    async def reschedule(self, outbox_ids: list[int], delay: float) -> None:
        """Release claimed events to be tried again in `delay` seconds."""
        await self.db.run(lambda conn: conn.execute(
            "UPDATE webhook_outbox SET next_attempt_at = now() + make_interval(secs => $2::float8)"
            " WHERE id = ANY($1::bigint[]) AND status = 'pending'", outbox_ids, delay))

    async def failed(self, outbox_id: int, error: str, retry_in: float | None) -> None:
        """Schedule another attempt in `retry_in` seconds, or dead-letter it (None)."""
        await self.db.run(lambda conn: conn.execute(
            "UPDATE webhook_outbox SET attempts = attempts + 1, last_error = $2,"
            " status = CASE WHEN $3::float8 IS NULL THEN 'dead' ELSE 'pending' END,"
            " next_attempt_at = now() + make_interval(secs => coalesce($3::float8, 0)) WHERE id = $1",
            outbox_id, error[:500], retry_in))

    async def list(self, status: str | None = None, limit: int = 50,
                   account_id: uuid.UUID | None = None) -> list[dict]:
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT o.id, o.event_id, o.event_type, o.session_id, o.url, o.status, o.attempts, o.last_error,"
            " o.created_at, o.delivered_at, o.next_attempt_at FROM webhook_outbox o"
            " LEFT JOIN masking_sessions s ON s.id = o.session_id"
            f" WHERE ($1::text IS NULL OR o.status = $1) AND {owned_by('$3', 'o.session_id', 's.account_id')}"
            " ORDER BY o.id DESC LIMIT $2", status, limit, account_id))
        return [dict(r) for r in rows]

    async def retry_dead(self, account_id: uuid.UUID | None = None, outbox_ids: list[int] | None = None) -> int:
        """Send dead events again from their first attempt: all of the account's
        (`account_id` None: every account's), or only those of `outbox_ids`."""
        result = await self.db.run(lambda conn: conn.execute(
            "UPDATE webhook_outbox SET status = 'pending', next_attempt_at = now(), attempts = 0"
            " WHERE id IN (SELECT o.id FROM webhook_outbox o LEFT JOIN masking_sessions s ON s.id = o.session_id"
            f"  WHERE o.status = 'dead' AND {owned_by('$1', 'o.session_id', 's.account_id')}"
            "   AND ($2::bigint[] IS NULL OR o.id = ANY($2::bigint[])))", account_id, outbox_ids))
        requeued = int(result.split()[-1])
        if requeued:
            self.told()
        return requeued

    async def counts(self) -> dict[str, int]:
        """Events not delivered yet, by status (`pending`: the backlog, `dead`: given up on)."""
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT status, count(*) AS n FROM webhook_outbox WHERE status IN ('pending', 'dead') GROUP BY status"))
        return {r["status"]: r["n"] for r in rows}

    async def summary(self) -> dict:
        """For the console: events by status, and when the oldest pending one was written."""
        row = await self.db.run(lambda conn: conn.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'pending') AS pending,"
            " count(*) FILTER (WHERE status = 'dead') AS dead,"
            " count(*) FILTER (WHERE status = 'delivered') AS delivered,"
            " min(created_at) FILTER (WHERE status = 'pending') AS oldest_pending FROM webhook_outbox"))
        return dict(row)


class OutboxListener:
    """A connection of its own, outside the pools, that LISTENs for events
    other processes make due (the FastAGI fallback, the CLI) and calls
    `on_due`. A dispatcher that can rely on it polls rarely; while it cannot
    (database down, a transaction pooler that does not keep LISTEN, a
    connection a NAT dropped silently: `check` finds out) the dispatcher
    polls as before, and this tries again every `retry_seconds`."""

    def __init__(self, dsn: str | None, on_due: Callable[[], None], application_name: str,
                 timeout: float = 2.0, retry_seconds: float = 5.0):
        self.dsn, self.on_due, self.application_name = dsn, on_due, application_name
        self.timeout, self.retry_seconds = timeout, retry_seconds
        self._conn: asyncpg.Connection | None = None
        self._tried_at: float | None = None

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def ensure(self) -> bool:
        """Whether a due event will be told: listening, or now listening again."""
        if self.listening:
            return True
        if self.dsn is None or (self._tried_at is not None
                                and time.monotonic() - self._tried_at < self.retry_seconds):
            return False
        self._tried_at = time.monotonic()
        try:
            conn = await asyncpg.connect(self.dsn, timeout=self.timeout,
                                         server_settings={"application_name": self.application_name})
            try:
                async with asyncio.timeout(self.timeout):
                    await conn.add_listener(NOTIFY_CHANNEL, self._notified)
                    listening = await _listening_on(conn)
                # Lost (a restart, a DBA's pg_terminate_backend): wake the
                # dispatcher, which then polls and listens again.
                conn.add_termination_listener(self._notified)
            except BaseException:
                conn.terminate()
                raise
        except (*UNAVAILABLE, asyncpg.PostgresError):
            return False
        if not listening:  # LISTEN went to a pooler's server connection, not ours
            conn.terminate()
            return False
        self._conn = conn
        self.on_due()  # events written while nobody listened are due now
        return True

    async def check(self) -> bool:
        """Whether the connection still answers and still listens; if not it is
        dropped (a half-open socket would otherwise be trusted for ever)."""
        if not self.listening:
            return False
        try:
            async with asyncio.timeout(self.timeout):
                if await _listening_on(self._conn):
                    return True
        except (*UNAVAILABLE, asyncpg.PostgresError):
            pass
        await self.close()
        return False

    def _notified(self, *_args: object) -> None:
        self.on_due()

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.terminate()  # nothing to flush: closing politely could wait on a dead server
            self._conn = None


async def _listening_on(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT $1::text IN (SELECT pg_listening_channels())", NOTIFY_CHANNEL))
