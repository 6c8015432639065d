"""Signing in to the console with an API key, the session cookie, CSRF, signing out.

The key is typed once into the sign-in form; the console keeps a row per
sign-in (store.console_sessions) and hands the browser a random token in a
cookie that is HttpOnly, SameSite=Strict, Secure over https, and limited to
/console. Every unsafe request must carry the sign-in's CSRF token in its
form, derived from the cookie's token (so it needs no storage, and a page's
token does not reveal the cookie). The sign-in form itself is protected the
same way by a short-lived cookie of its own.
"""
from __future__ import annotations

import secrets
from urllib.parse import quote

from aiohttp import web

from bridge.api.context import SETTINGS, STORE, client_address
from bridge.console.access import Principal, landing, may_sign_in
from bridge.console.context import PRINCIPAL, TOKEN, Refused, actor, principal
from bridge.console.csrf import FIELD, csrf_token, same_token
from bridge.console.render import redirect, render
from bridge.logs import get_logger
from bridge.store.console_sessions import ConsoleSignIn

COOKIE = "masking_console"
SIGNIN_COOKIE = "masking_console_signin"
PUBLIC = ("/console/sign-in", "/console/static/")
SAFE_METHODS = ("GET", "HEAD")
log = get_logger("bridge.console")


def over_https(request: web.Request) -> bool:
    if request.config_dict[SETTINGS].trust_forwarded_for:
        return request.headers.get("X-Forwarded-Proto", request.scheme) == "https"
    return request.secure


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int,
               path: str = "/console") -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True, samesite="Strict",
                        secure=over_https(request))


def principal_of(signin: ConsoleSignIn) -> Principal:
    return Principal(signin.key_prefix, signin.key_name, signin.scopes, signin.token_hash.hex()[:16],
                     signin.expires_at)


@web.middleware
async def auth_middleware(request: web.Request, handler):
    """Every console route but sign-in and the static files needs a live
    sign-in, and every unsafe one its CSRF token too."""
    if request.path.startswith(PUBLIC):
        return await handler(request)
    token = request.cookies.get(COOKIE, "")
    signin = await request.config_dict[STORE].console_sessions.lookup(token) if token else None
    if signin is None:
        if request.method in SAFE_METHODS and not request.path.endswith("/events"):
            return redirect(f"/console/sign-in?next={quote(request.path_qs, safe='/')}")
        raise Refused(401, "not signed in (or the sign-in expired): sign in again")
    request[PRINCIPAL], request[TOKEN] = principal_of(signin), token
    if request.method not in SAFE_METHODS:
        form = await request.post()
        if not same_token(csrf_token(token), form.get(FIELD)):
            raise Refused(403, "the form's CSRF token is missing or wrong: reload the page and try again")
    return await handler(request)


def safe_next(raw: str | None) -> str | None:
    """A page to return to after signing in: a console path, never another site."""
    if raw and raw.startswith("/console/") and not raw.startswith("//") and "\\" not in raw \
            and raw.isprintable() and not raw.startswith(PUBLIC):
        return raw
    return None


async def sign_in_page(request: web.Request) -> web.StreamResponse:
    return await sign_in_form(request, safe_next(request.query.get("next")))


async def sign_in_form(request: web.Request, next_page: str | None, error: str | None = None,
                       status: int = 200) -> web.StreamResponse:
    """The form, with a fresh token in it and in a cookie only the form's POST gets back."""
    form_token = secrets.token_urlsafe(24)
    response = await render(request, "sign_in.html", {"form_token": form_token, "next": next_page or "",
                                                       "error": error}, status=status)
    set_cookie(request, response, SIGNIN_COOKIE, form_token, 3600, path="/console/sign-in")
    return response


async def sign_in(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not same_token(request.cookies.get(SIGNIN_COOKIE, ""), form.get(FIELD)):
        raise Refused(403, "the sign-in form expired or was not sent from this console: reload it and try again")
    store, settings = request.config_dict[STORE], request.config_dict[SETTINGS]
    next_page = safe_next(form.get("next"))
    api_key = form.get("api_key")
    key = await store.api_keys.for_token(api_key.strip()) if isinstance(api_key, str) and api_key.strip() else None
    if key is None:
        log.info("console.sign_in_refused", reason="unknown_key")
        return await sign_in_form(request, next_page, "Unknown or revoked API key.", 401)
    if not may_sign_in(frozenset(key["scopes"])):
        log.info("console.sign_in_refused", reason="scope", key=key["prefix"])
        return await sign_in_form(request, next_page, "This API key has no console scope (console, or a page's:"
                                                      " sessions, numbers, subjects, audit).", 403)
    lifetime = settings.console_session_minutes * 60
    token = await store.console_sessions.create(key["id"], client_address(request), lifetime)
    request[PRINCIPAL] = principal_of(await store.console_sessions.lookup(token))
    await store.audit.append_by(actor(request), "console.signed_in", "apikey", key["prefix"],
                                details={"signin": principal(request).signin_id})
    response = redirect(landing(principal(request), next_page))
    set_cookie(request, response, COOKIE, token, lifetime)
    response.del_cookie(SIGNIN_COOKIE, path="/console/sign-in")
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    store = request.config_dict[STORE]
    await store.console_sessions.end(request[TOKEN])
    await store.audit.append_by(actor(request), "console.signed_out", "apikey", principal(request).key_prefix,
                                details={"signin": principal(request).signin_id})
    response = redirect("/console/sign-in")
    response.del_cookie(COOKIE, path="/console")
    return response


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/sign-in", sign_in_page)
    router.add_post("/sign-in", sign_in)
    router.add_post("/sign-out", sign_out)
