"""The routes outside `/v1`, which need no API key: liveness, readiness, Prometheus metrics, the OpenAPI document.

Probes and scrapers call them without credentials (docs/operations.md):
- `/healthz`, liveness: the process and its event loop answer. Nothing else is
  checked, so a database or Asterisk outage never gets a working bridge killed
  (it keeps serving prompts and spooling records meanwhile).
- `/readyz`, readiness: 200 only while calls can be served here (ARI connected,
  Asterisk fully booted, the database answering, not draining); 503 with the
  failing checks otherwise. Take the node out of rotation, do not restart it.
"""
from __future__ import annotations

from importlib import resources

from aiohttp import web

from bridge import metrics
from bridge.api.context import ACTIVE_CALLS, READINESS, STORE
from bridge.store import Store
from bridge.store.errors import StoreUnavailable


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/healthz", healthz)
    router.add_get("/readyz", readyz)
    router.add_get("/metrics", metrics_endpoint)
    router.add_get("/openapi.json", openapi)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def database_ready(store: Store) -> dict[str, bool]:
    """Readiness when the service gives none of its own: can the store reach PostgreSQL?"""
    try:
        await store.ping()
        return {"database": True}
    except StoreUnavailable:
        return {"database": False}


async def readyz(request: web.Request) -> web.Response:
    checks = await request.app[READINESS]()
    ready = all(checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    await refresh_gauges(request.app)
    body, content_type = metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type, "X-Content-Type-Options": "nosniff"})


async def refresh_gauges(app: web.Application) -> None:
    """The state gauges, read at scrape time from the service and the database.

    A gauge the app cannot know (no ARI in an API-only app) is left alone; the
    database's gauges keep their last values while it is down, and
    `masking_database_up` says so.
    """
    checks = await app[READINESS]()
    for check, gauge in (("ari", metrics.ari_connected), ("asterisk", metrics.asterisk_fully_booted)):
        if check in checks:
            gauge.set(1 if checks[check] else 0)
    if "accepting_calls" in checks:
        metrics.draining.set(0 if checks["accepting_calls"] else 1)
    metrics.active_calls.set(app[ACTIVE_CALLS]())
    store = app[STORE]
    try:
        pool = await store.numbers.pool_counts()
        backlog = await store.outbox.counts()
        overdue = await store.incidents.overdue_counts()
    except StoreUnavailable:
        metrics.database_up.set(0)
        return
    metrics.database_up.set(1)
    metrics.pool_numbers_in_use.set(pool["in_use"])
    metrics.pool_numbers_free.set(pool["active"] - pool["in_use"])
    metrics.webhooks_pending.set(backlog.get("pending", 0))
    metrics.webhooks_dead.set(backlog.get("dead", 0))
    for clock, count in overdue.items():
        metrics.privacy_overdue.labels(clock=clock).set(count)


async def openapi(request: web.Request) -> web.Response:
    text = (resources.files("bridge.api") / "openapi.json").read_text()
    return web.Response(text=text, content_type="application/json")
