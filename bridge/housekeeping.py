"""The service's timers over the database, without a cron: sessions expired at
their time, and what the retention policy says is due purged.

Each is safe beside other instances and the CLI: expiry and purge take their
rows with `FOR UPDATE SKIP LOCKED`, so two nodes never do the same row twice.
"""
from __future__ import annotations

import asyncio
import socket

from bridge import metrics
from bridge.clock import utcnow
from bridge.config import Settings
from bridge.logs import get_logger
from bridge.privacy.audit import Actor
from bridge.privacy.retention import policy_in_force
from bridge.recordings.backfill import plaintext_retirer
from bridge.store import Store
from bridge.store.errors import StoreUnavailable

log = get_logger("bridge.housekeeping")
EXPIRY_LOOK_SECONDS = 5.0  # sessions created since the last look, with an earlier expiry


async def expire_sessions_periodically(store: Store, settings: Settings) -> None:
    """Expire sessions at their time: sleep until the next expiry, looking at
    least every 5 s. The `session.expired` events commit with the expiry and
    tell the webhook sender themselves (bridge/store/outbox.py `enqueue_in`)."""
    while True:
        try:
            expired = await store.sessions.expire_due(settings.webhook_url or None)
            if expired:
                log.info("sessions.expired", count=len(expired))
            next_at = await store.sessions.next_expiry()
            delay = EXPIRY_LOOK_SECONDS if next_at is None else \
                min(EXPIRY_LOOK_SECONDS, max(0.05, (next_at - utcnow()).total_seconds()))
        except StoreUnavailable:
            delay = EXPIRY_LOOK_SECONDS
        except Exception as exc:
            log.error("sessions.expiry_failed", error=type(exc).__name__)
            delay = EXPIRY_LOOK_SECONDS
        await asyncio.sleep(delay)


async def purge_periodically(store: Store, settings: Settings) -> None:
    """Retention: purge what is due every `purge_interval_seconds` (first a
    minute after start, once the service settled). Batches skip rows another
    purge (another node, `masking purge`) holds."""
    by = Actor("service", f"service@{socket.gethostname()}")
    await asyncio.sleep(min(60.0, settings.purge_interval_seconds))
    while True:
        try:
            report = await store.retention.purge(policy_in_force(settings), settings.purge_batch, by=by,
                                                 webhook_url=settings.webhook_url or None,
                                                 retire=plaintext_retirer(store))
            counts = report.to_json()["kinds"]
            for kind, c in counts.items():
                metrics.retention_purged_total.labels(kind).inc(c["purged"])
            if report.total or any(c["held"] for c in counts.values()):
                log.info("retention.purged", **{f"{k}_purged": c["purged"] for k, c in counts.items()},
                         **{f"{k}_held": c["held"] for k, c in counts.items()})
        except StoreUnavailable:
            log.warning("retention.database_unavailable")
        except Exception as exc:
            log.error("retention.purge_failed", error=type(exc).__name__)
        await asyncio.sleep(settings.purge_interval_seconds)
