"""Sessions past their time, expired in the caller's transaction.

Runs before every allocation and every retirement of a number (so an expired
session never blocks the unique index on live participants), from the
service's expiry timer (so webhooks go out on time) and first in a purge or
erasure: one mechanism, no cron. Its own module because numbers, sessions and
retention all call it.
"""
from __future__ import annotations

import uuid

import asyncpg

from bridge.store.outbox import enqueue_in, notify_on_commit


async def expire_due_in(conn: asyncpg.Connection, default_webhook_url: str | None = None,
                        limit: int = 500, *, notify: bool = True) -> list[uuid.UUID]:
    """Expire up to `limit` sessions past their time (and enqueue session.expired).
    `notify`: as `enqueue_in`'s; False where the caller wakes its sender itself."""
    rows = await conn.fetch(
        "UPDATE masking_sessions SET status = 'expired' WHERE id IN (SELECT id FROM masking_sessions"
        " WHERE status = 'active' AND expires_at <= now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " RETURNING id, external_ref, webhook_url, expires_at", limit)
    if notify and any(row["webhook_url"] or default_webhook_url for row in rows):
        await notify_on_commit(conn)
    for row in rows:
        await conn.execute("UPDATE session_participants SET live = false, ended_at = $2 WHERE session_id = $1",
                           row["id"], row["expires_at"])
        url = row["webhook_url"] or default_webhook_url
        if url:
            await enqueue_in(conn, "session.expired", row["id"], url,
                             {"session_id": str(row["id"]), "external_ref": row["external_ref"],
                              "expired_at": row["expires_at"].isoformat()}, notify=False)
    return [r["id"] for r in rows]
