"""The webhook outbox over HTTP: events pending, delivered or dead, and sending the dead ones again.

Dead events stay visible here until retried (docs/webhooks.md).
"""
from __future__ import annotations

from aiohttp import web

from bridge.api.context import STORE
from bridge.api.errors import invalid
from bridge.api.fields import limit_param


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/webhooks/events", list_webhook_events)
    router.add_post("/v1/webhooks/events/retry", retry_webhook_events)


async def list_webhook_events(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status is not None and status not in ("pending", "delivered", "dead"):
        raise invalid("status", "status must be pending, delivered or dead")
    rows = await request.app[STORE].outbox.list(status, limit_param(request))
    return web.json_response({"events": [
        {"id": str(r["event_id"]), "type": r["event_type"], "session_id": str(r["session_id"]) if r["session_id"]
         else None, "status": r["status"], "attempts": r["attempts"], "last_error": r["last_error"],
         "created_at": r["created_at"].isoformat(),
         "delivered_at": r["delivered_at"].isoformat() if r["delivered_at"] else None} for r in rows]})


async def retry_webhook_events(request: web.Request) -> web.Response:
    return web.json_response({"requeued": await request.app[STORE].outbox.retry_dead()})
