"""The webhook outbox over HTTP: events pending, delivered or dead, and sending the dead ones again.

Dead events stay visible here until retried (docs/webhooks.md); a key sees
and retries only its account's events. A failure
shows as a category (`http_500`, `connection_refused`, `timeout`...), never
what the receiver said.
"""
from __future__ import annotations

import re

from aiohttp import web

from bridge.api.context import STORE, account_id
from bridge.api.errors import invalid
from bridge.api.fields import limit_param


CATEGORY = re.compile(r"[a-z][a-z0-9_]{1,40}")
LEGACY_STATUS = re.compile(r"HTTP (\d{3})")


def public_error(stored: str | None) -> str | None:
    """The category of a delivery failure; rows written before categories
    (`HTTP 500`, an exception's name) are shown as one too."""
    if stored is None or CATEGORY.fullmatch(stored):
        return stored
    status = LEGACY_STATUS.fullmatch(stored)
    return f"http_{status.group(1)}" if status else "delivery_failed"


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/webhooks/events", list_webhook_events)
    router.add_post("/v1/webhooks/events/retry", retry_webhook_events)


async def list_webhook_events(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status is not None and status not in ("pending", "delivered", "dead"):
        raise invalid("status", "status must be pending, delivered or dead")
    rows = await request.app[STORE].outbox.list(status, limit_param(request), account_id(request))
    return web.json_response({"events": [
        {"id": str(r["event_id"]), "type": r["event_type"], "session_id": str(r["session_id"]) if r["session_id"]
         else None, "status": r["status"], "attempts": r["attempts"], "last_error": public_error(r["last_error"]),
         "created_at": r["created_at"].isoformat(),
         "delivered_at": r["delivered_at"].isoformat() if r["delivered_at"] else None} for r in rows]})


async def retry_webhook_events(request: web.Request) -> web.Response:
    return web.json_response({"requeued": await request.app[STORE].outbox.retry_dead(account_id(request))})
