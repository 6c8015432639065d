"""The HTTP API business back ends use: sessions, calls, recordings, the pool.

Every `/v1` route needs an API key (`Authorization: Bearer mk_...`) with the
route's scope; `/healthz`, `/readyz`, `/metrics` and `/openapi.json` do not.
The OpenAPI document beside this file describes every route and error.
Showing participants' numbers, reading a recording and changing the pool write
audit rows (who, from where, why: `X-Audit-Reason`) before they answer.

This module assembles the app: the auth middleware, the scope table, the
per-key rate limit (ratelimit.py), and each resource module's routes (one
module per resource, beside this one). A key belongs to an account and the
resources see only that account's sessions and what hangs off them; the
`numbers`, `audit` and `subjects` scopes are the operator's and span every
account (docs/api.md#accounts).
"""
from __future__ import annotations

import uuid
from typing import Awaitable, Callable

from aiohttp import web

from bridge.api import (
    audit, calls, health, numbers, ratelimit, recordings, sessions, subject_rights, subjects, wait_audio, webhooks,
)
from bridge.api.context import ACTIVE_CALLS, API_KEY, PLACE_CALL, READINESS, SETTINGS, STORE
from bridge.api.errors import ApiError, error_middleware
from bridge.calls.connect import ConnectRequest
from bridge.config import Settings
from bridge.sessions.models import MaskingSession
from bridge.store import Store

# `console` and `reveal` open the web console and a number's reveal in it (bridge/console/access.py).
SCOPES = ("sessions", "numbers", "recordings", "audit", "subjects", "console", "reveal")
# No two resources share a path, so the order they register in decides no match.
RESOURCES = (health, sessions, calls, recordings, wait_audio, numbers, webhooks, audit, subjects, subject_rights)


def make_app(store: Store, settings: Settings,
             readiness: Callable[[], Awaitable[dict[str, bool]]] | None = None,
             active_calls: Callable[[], int] = lambda: 0,
             place_call: Callable[[MaskingSession, ConnectRequest], Awaitable[uuid.UUID]] | None = None,
             ) -> web.Application:
    """`place_call` starts a click-to-call (the service's); without it, such requests answer 503."""
    app = web.Application(middlewares=[error_middleware, auth_middleware, ratelimit.rate_limit_middleware],
                          client_max_size=64 * 1024)
    app[STORE], app[SETTINGS] = store, settings
    ratelimit.install(app)
    app[READINESS] = readiness or (lambda: health.database_ready(store))
    app[ACTIVE_CALLS] = active_calls
    app[PLACE_CALL] = place_call
    for resource in RESOURCES:
        resource.add_routes(app.router)
    return app


# -- auth ------------------------------------------------------------------------
ROUTE_SCOPES = {"/v1/sessions": "sessions", "/v1/calls": "sessions", "/v1/webhooks": "sessions",
                "/v1/numbers": "numbers", "/v1/recordings": "recordings", "/v1/audit": "audit",
                "/v1/wait-audio": "sessions", "/v1/subjects": "subjects"}


# Holds decide what erasure may touch: the subjects scope, like erasure itself.
SUFFIX_SCOPES = {"/legal-hold": "subjects"}


def scope_for(path: str) -> str | None:
    for suffix, scope in SUFFIX_SCOPES.items():
        if path.endswith(suffix):
            return scope
    for prefix, scope in ROUTE_SCOPES.items():
        if path == prefix or path.startswith(prefix + "/"):
            return scope
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler):
    if not request.path.startswith("/v1/"):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise ApiError(401, "unauthenticated", "send an API key as 'Authorization: Bearer <key>'")
    key = await request.app[STORE].api_keys.for_token(header[7:].strip())
    if key is None:
        raise ApiError(401, "unauthenticated", "unknown or revoked API key")
    scope = scope_for(request.path)
    if scope and scope not in key["scopes"]:
        raise ApiError(403, "forbidden", f"this API key lacks the '{scope}' scope")
    request[API_KEY] = key
    return await handler(request)
