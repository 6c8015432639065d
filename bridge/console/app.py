"""The console as a sub-application of the API's app, at /console on the same port.

`install_console(app)` mounts it: the service calls it on the app `make_app`
built (bridge/service.py), so the console shares the API's store, settings
and readiness checks. Its own middlewares turn refusals into pages and keep
every route but sign-in behind a live sign-in (auth.py); it samples the pool
for the Pool page's chart while the app runs.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from bridge.api.context import SETTINGS, STORE
from bridge.console import auth, live, pool, privacy, recordings, sessions, webhooks
from bridge.console.access import Forbidden, home_for
from bridge.console.audit_check import AUDIT_CHECK
from bridge.console.context import PRINCIPAL, STOPPING, Refused
from bridge.console.render import SECURITY_HEADERS, redirect, render, setup_templates
from bridge.logs import get_logger
from bridge.numbering import InvalidNumber
from bridge.store.errors import LegalHoldActive, NotFound, SessionAnonymised, StoreUnavailable

STATIC = Path(__file__).parent / "static"
PAGES = (auth, live, sessions, recordings, pool, webhooks, privacy)
log = get_logger("bridge.console")


def install_console(app: web.Application) -> None:
    """Mount the console on the API's `app` (before it starts)."""
    app.router.add_get("/console", to_console)
    app.add_subapp("/console", console_app(app[STORE], app[SETTINGS]))


async def to_console(_request: web.Request) -> web.Response:
    return redirect("/console/")


def console_app(store, settings) -> web.Application:
    console = web.Application(middlewares=[refusals_middleware, auth.auth_middleware])
    # The API's own keys too: helpers it shares (client_address) read `request.app`.
    console[STORE], console[SETTINGS] = store, settings
    console[STOPPING] = asyncio.Event()
    console[AUDIT_CHECK] = {}
    setup_templates(console)
    console.router.add_get("/", home)
    console.router.add_static("/static/", STATIC)
    for page in PAGES:
        page.add_routes(console.router)
    console.on_response_prepare.append(security_headers)
    console.on_shutdown.append(stop_streams)

    async def sampler(_app: web.Application):
        task = asyncio.create_task(pool.sample_pool_forever(store, settings), name="console-pool-sampler")
        yield
        task.cancel()

    console.cleanup_ctx.append(sampler)
    return console


async def home(request: web.Request) -> web.Response:
    return redirect(home_for(request[PRINCIPAL]))


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
    if request.path.startswith("/console/static/"):
        response.headers["Cache-Control"] = "public, max-age=3600"


async def stop_streams(app: web.Application) -> None:
    """Live pages' event streams end, so stopping the service does not wait on browsers."""
    app[STOPPING].set()


# A refusal from anywhere below, as a page (the API's own middleware would answer JSON).
REFUSALS = ((NotFound, 404, None), (StoreUnavailable, 503, "the database is unavailable; try again shortly"),
            (SessionAnonymised, 409, None), (LegalHoldActive, 409, None), (InvalidNumber, 422, None))


@web.middleware
async def refusals_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except Refused as exc:
        status, message = exc.status, exc.message
    except Forbidden as exc:
        status, message = 403, str(exc)
    except tuple(kind for kind, _, _ in REFUSALS) as exc:
        status, message = next((s, m or str(exc)) for kind, s, m in REFUSALS if isinstance(exc, kind))
    if status >= 500:
        log.warning("console.refused", status=status, path=request.path)
    return await render(request, "error.html", {"status": status, "message": message}, status=status)
