"""The routes outside `/v1`, which need no API key: liveness, readiness, Prometheus metrics, the OpenAPI document.

Probes and scrapers call them without credentials (docs/api.md).
"""
from __future__ import annotations

from importlib import resources

from aiohttp import web

from bridge import metrics
from bridge.api.context import ACTIVE_CALLS, EXTRA_METRICS, READINESS, STORE
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
    lines = [*metrics.calls_total.render(), *metrics.call_setup_seconds.render(),
             *metrics.webhook_failures_total.render(), *metrics.webhooks_delivered_total.render(),
             *metrics.retention_purged_total.render(),
             *metrics.gauge("masking_active_calls", "Calls in progress.", request.app[ACTIVE_CALLS]()),
             *request.app[EXTRA_METRICS]()]
    try:
        pool = await request.app[STORE].numbers.pool_counts()
        lines += metrics.gauge("masking_pool_numbers_in_use", "Pool numbers with live sessions.", pool["in_use"])
        lines += metrics.gauge("masking_pool_numbers_free", "Pool numbers with no live session.",
                               pool["active"] - pool["in_use"])
    except StoreUnavailable:
        pass
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


async def openapi(request: web.Request) -> web.Response:
    text = (resources.files("bridge.api") / "openapi.json").read_text()
    return web.Response(text=text, content_type="application/json")
