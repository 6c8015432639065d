"""Pages and fragments from the Jinja templates beside this package, with what
every page needs (who is signed in, the pages they may open, the CSRF token)
and the filters that keep numbers masked and times readable."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bridge.console.access import allowed, pages_for
from bridge.console.context import PRINCIPAL, TOKEN
from bridge.console.csrf import csrf_token
from bridge.numbering import mask_number

TEMPLATES = Path(__file__).parent / "templates"
# Every console answer: no caching of personal data, no framing, nothing
# loaded or posted anywhere but here, and no URL of ours in another site's logs.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
                               " connect-src 'self'; media-src 'self'; object-src 'none'; base-uri 'none';"
                               " form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def setup_templates(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                               undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(masked=masked, when=when, iso=iso, duration=duration)


def common(request: web.Request) -> dict:
    principal = request.get(PRINCIPAL)
    return {"principal": principal, "pages": pages_for(principal) if principal else [],
            "csrf": csrf_token(request[TOKEN]) if TOKEN in request else "", "path": request.path,
            "can": (lambda permission: principal is not None and allowed(principal, permission))}


async def render(request: web.Request, template: str, context: dict, status: int = 200) -> web.Response:
    return aiohttp_jinja2.render_template(template, request, {**common(request), **context}, status=status)


def fragment(request: web.Request, template: str, context: dict) -> str:
    return aiohttp_jinja2.render_string(template, request, {**common(request), **context})


def redirect(location: str) -> web.Response:
    """After a form: see the result at `location` (a reload does not post again)."""
    return web.Response(status=303, headers={"Location": location})


# -- filters ---------------------------------------------------------------------------
def masked(number: str | None) -> str:
    return "(erased)" if number is None else mask_number(number)


def when(moment: datetime | None) -> str:
    if moment is None:
        return "–"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def duration(seconds: float | None) -> str:
    """`75` -> `1m 15s`; hours shown past the hour."""
    if seconds is None:
        return "–"
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"
