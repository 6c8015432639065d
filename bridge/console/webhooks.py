"""Webhooks: the outbox's backlog and its dead letters, each sendable again
(from its first attempt), or all of them at once."""
from __future__ import annotations

from aiohttp import web

from bridge.console.context import Refused, allow, form_text, store
from bridge.console.render import redirect, render
from bridge.numbering import redact_text

LISTED = 100


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/webhooks", webhooks_page)
    router.add_post("/webhooks/retry", retry)


def event_row(row: dict) -> dict:
    """An outbox row as shown: its error redacted (a receiver's answer may quote anything)."""
    return {**row, "last_error": redact_text(row["last_error"]) if row.get("last_error") else None}


async def webhooks_page(request: web.Request) -> web.Response:
    allow(request, "webhooks")
    outbox = store(request).outbox
    return await render(request, "webhooks.html", {
        "counts": await outbox.summary(), "dead": [event_row(r) for r in await outbox.list("dead", LISTED)],
        "pending": [event_row(r) for r in await outbox.list("pending", LISTED)],
        "requeued": request.query.get("requeued", "")})


async def retry(request: web.Request) -> web.Response:
    """One dead letter (`event`: its outbox id), or every one (`all`)."""
    allow(request, "webhooks")
    raw = await form_text(request, "event", 20)
    if raw is None and await form_text(request, "all", 5) is None:
        raise Refused(422, "choose a dead letter to send again, or all of them")
    if raw is not None and not (raw.isdigit() and len(raw) <= 18):
        raise Refused(422, "'event' is not an outbox id")
    requeued = await store(request).outbox.retry_dead(outbox_ids=[int(raw)] if raw is not None else None)
    return redirect(f"/console/webhooks?requeued={requeued}")
