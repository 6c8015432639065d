"""The audit trail over HTTP (the `audit` scope): who read or changed what, filtered by action, session, actor
and time (`since` inclusive, `until` exclusive). By subject only from the CLI: a number stays out of URLs.

What is audited, and how the chain is verified, is in docs/api.md and docs/privacy.md.
"""
from __future__ import annotations

from aiohttp import web

from bridge.api.context import STORE
from bridge.api.fields import checked_text, limit_param, time_query, uuid_query
from bridge.privacy.audit import entry_json


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/audit", list_audit)


async def list_audit(request: web.Request) -> web.Response:
    rows = await request.app[STORE].audit.list(
        action=checked_text(request.query.get("action"), "action", 100), session_id=uuid_query(request, "session_id"),
        since=time_query(request, "since"), until=time_query(request, "until"),
        actor=checked_text(request.query.get("actor"), "actor", 200), limit=limit_param(request))
    return web.json_response({"entries": [entry_json(r) for r in rows]})
