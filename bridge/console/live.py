"""Live: calls in progress on every node, today's outcomes, and the service's
health, updating by themselves over server-sent events (htmx's sse extension
swaps the fragments in; without JavaScript the page is a snapshot)."""
from __future__ import annotations

import asyncio
import time

from aiohttp import web

from bridge.api.context import READINESS
from bridge.clock import utcnow
from bridge.console.context import STOPPING, TOKEN, allow, store
from bridge.console.render import fragment, render
from bridge.console.state import day_start, live_call, outcomes
from bridge.store.errors import StoreUnavailable

TICK = 1.0  # seconds between updates: durations tick, new calls show within one
RECHECK = 15.0  # seconds between checks that the sign-in is still live
COUNTS_EVERY = 5.0  # seconds between counts of today's calls (a range scan, per viewer)
# The service's readiness checks, as an operator reads them; checks added
# later (an edge proxy's, say) show under their own name.
CHECK_LABELS = {"ari": "ARI (Stasis app connected)", "asterisk": "AMI (Asterisk fully booted)",
                "database": "Database", "accepting_calls": "Taking new calls"}


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/live", live_page)
    router.add_get("/live/events", live_events)


async def live_state(request: web.Request, counts: dict | None = None) -> dict:
    """Everything the page shows, read once (today's `counts` only if not given)."""
    now = utcnow()
    checks = dict(await request.config_dict[READINESS]())
    try:
        calls = [live_call(c, now) for c in await store(request).calls.live()]
        if counts is None:
            counts = outcomes(await store(request).calls.dispositions_since(day_start(now)))
    except StoreUnavailable:
        calls, counts, checks["database"] = None, None, False
    health = [(CHECK_LABELS.get(name, name.replace("_", " ").capitalize()), ok) for name, ok in checks.items()]
    return {"calls": calls, "counts": counts, "health": health, "now": now}


async def live_page(request: web.Request) -> web.Response:
    allow(request, "live")
    return await render(request, "live.html", await live_state(request))


def sse_event(name: str, html: str) -> bytes:
    """One server-sent event; every line of the fragment its own `data:` line."""
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {name}\n{lines}\n".encode()


async def live_events(request: web.Request) -> web.StreamResponse:
    """The page's fragments, sent again whenever they change, until the browser
    leaves, the sign-in ends or the service stops."""
    allow(request, "live")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    stopping, sent, checked = request.app[STOPPING], {}, time.monotonic()
    counts, counted = None, 0.0
    try:
        while not stopping.is_set():
            fresh = time.monotonic() - counted > COUNTS_EVERY
            state = await live_state(request, None if fresh else counts)
            if fresh:
                counts, counted = state["counts"], time.monotonic()
            for name, template in (("calls", "_live_calls.html"), ("counts", "_live_counts.html"),
                                   ("health", "_live_health.html")):
                html = fragment(request, template, state)
                if sent.get(name) != html:
                    await response.write(sse_event(name, html))
                    sent[name] = html
            if time.monotonic() - checked > RECHECK:
                checked = time.monotonic()
                if await store(request).console_sessions.lookup(request[TOKEN]) is None:
                    break
                await response.write(b": still here\n\n")  # finds a browser that left while nothing changed
            if request.transport is None or request.transport.is_closing():
                break
            try:
                await asyncio.wait_for(stopping.wait(), TICK)
            except TimeoutError:
                pass
    except (ConnectionError, StoreUnavailable):
        pass  # the browser left, or the database went while checking the sign-in: it reconnects
    return response
