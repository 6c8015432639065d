"""Pool: the virtual numbers by kind (free, in use, reserved, quarantined,
shared with PINs) and their utilisation over time, from samples the console
takes every SAMPLE_SECONDS while the service runs (store.pool_history)."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

from aiohttp import web

from bridge.clock import utcnow
from bridge.config import Settings
from bridge.console.context import allow, settings, store
from bridge.console.render import render
from bridge.console.state import pool_series, utilisation
from bridge.logs import get_logger
from bridge.store import Store
from bridge.store.errors import StoreUnavailable

SAMPLE_SECONDS = 300
CHART_DAYS = 7
MAX_LISTED = 500
log = get_logger("bridge.console")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/pool", pool_page)


def number_kind(row: dict) -> str:
    if row["status"] == "retired":
        return "retired"
    if row["pin_mode"]:
        return "shared with PINs"
    if row["reserved"]:
        return "reserved"
    return "in use" if row["live_sessions"] else "free"


async def pool_page(request: web.Request) -> web.Response:
    allow(request, "pool")
    s, now = store(request), utcnow()
    summary = await s.numbers.summary(settings(request).quarantine_seconds)
    samples = await s.pool_history.since(now - timedelta(days=CHART_DAYS))
    numbers = await s.numbers.list("active")
    series = pool_series(samples, summary, now)
    return await render(request, "pool.html", {
        "summary": summary, "utilisation": utilisation(summary), "series_json": json.dumps(series),
        "samples": [(datetime.fromtimestamp(t, timezone.utc), used, active)
                    for t, used, active in zip(series["t"], series["in_use"], series["active"])][-48:],
        "numbers": [{**n, "kind": number_kind(n)} for n in numbers[:MAX_LISTED]], "more": len(numbers) > MAX_LISTED,
        "chart_days": CHART_DAYS, "sample_minutes": SAMPLE_SECONDS // 60})


async def sample_pool_forever(s: Store, config: Settings) -> None:
    """A sample now and every SAMPLE_SECONDS; a database that is down only
    leaves a gap in the chart."""
    while True:
        try:
            await s.pool_history.record(SAMPLE_SECONDS, config.quarantine_seconds)
        except StoreUnavailable:
            log.warning("console.pool_sample_skipped", reason="database_unavailable")
        except Exception as exc:  # the sampler must outlive any one failure
            log.error("console.pool_sample_failed", error=type(exc).__name__)
        await asyncio.sleep(SAMPLE_SECONDS)
