"""Sessions and calls: search by external reference, session id or a number;
one session's calls with their outcomes and notices, who accessed it, a
participant's number revealed (with a reason, audited) and legal holds.

Numbers are shown masked everywhere. A search arrives by POST so a number
typed into it never lands in a URL (browser history, proxies' logs).
"""
from __future__ import annotations

import json
import re
import uuid

from aiohttp import web

from bridge.clock import utcnow
from bridge.console.context import Refused, actor, allow, form_text, path_uuid, settings, store
from bridge.console.recordings import grant_holds
from bridge.console.render import redirect, render
from bridge.numbering import InvalidNumber, parse_e164
from bridge.sessions.caller_id import participant
from bridge.sessions.models import MaskingSession
from bridge.store.errors import NotFound

MAX_QUERY = 200
NUMBER_LIKE = re.compile(r"\+?[0-9][0-9 ().-]{5,24}")
ROLES = ("a", "b")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/sessions", sessions_page)
    router.add_post("/sessions/search", search)
    router.add_get("/sessions/{id}", session_page)
    router.add_post("/sessions/{id}/reveal", reveal)
    router.add_post("/sessions/{id}/legal-hold", set_hold)
    router.add_post("/sessions/{id}/legal-hold/release", release_hold)


def session_row(session: MaskingSession, now) -> dict:
    return {"session": session, "state": session.state(now)}


async def sessions_page(request: web.Request) -> web.Response:
    allow(request, "sessions")
    now = utcnow()
    recent = await store(request).sessions.list(None, None, 50)
    return await render(request, "sessions.html", {"rows": [session_row(s, now) for s in recent], "query": "",
                                                   "found": None, "searched": False})


async def search(request: web.Request) -> web.Response:
    """By session (or call) id, by number (a virtual number's sessions, or a
    participant's: that lookup of a person is audited), else by external ref."""
    allow(request, "sessions")
    query = await form_text(request, "q", MAX_QUERY, required=True)
    sessions, found = await find_sessions(request, query)
    now = utcnow()
    return await render(request, "sessions.html", {"rows": [session_row(s, now) for s in sessions],
                                                   "query": query if "number" not in found else "",
                                                   "found": found, "searched": True})


async def find_sessions(request: web.Request, query: str) -> tuple[list[MaskingSession], str]:
    sessions_store = store(request).sessions
    try:
        key = uuid.UUID(query)
    except ValueError:
        key = None
    if key is not None:
        try:
            return [await sessions_store.get(key)], "session id"
        except NotFound:
            pass
        try:
            call = await store(request).calls.get(key)
        except NotFound:
            return [], "id"
        return ([await sessions_store.get(call["session_id"])] if call["session_id"] else []), "call id"
    by_ref = await sessions_store.list(query, None, 50)
    number = as_number(query, settings(request).default_region)
    if number is None:
        return by_ref, "external reference"
    by_number = await sessions_by_number(request, number)
    seen = {s.id for s in by_number}
    return [*by_number, *(s for s in by_ref if s.id not in seen)], "number or external reference"


def as_number(query: str, region: str) -> str | None:
    """The query as a number, if it is written as one (digits and separators:
    an order reference such as 'order-1a2b' is not a vanity number here)."""
    if not NUMBER_LIKE.fullmatch(query):
        return None
    try:
        return parse_e164(query, region)
    except InvalidNumber:
        return None


async def sessions_by_number(request: web.Request, number: str) -> list[MaskingSession]:
    """A virtual number's sessions; else a participant's (that lookup of a person is audited)."""
    held = await store(request).sessions.on_virtual_number(number)
    if held:
        return held
    subject_hash = store(request).keys.lookup_hash(number)
    await store(request).audit.append_by(actor(request), "console.number_searched", "subject", "search",
                                         subject_hash=subject_hash, details={"via": "console"})
    return await store(request).subjects.sessions(store(request).keys.kept_hashes(number))


async def session_page(request: web.Request) -> web.Response:
    return await render_session(request, path_uuid(request))


async def render_session(request: web.Request, session_id: uuid.UUID, revealed: dict | None = None) -> web.Response:
    """The session, its calls, who accessed it; viewing it is audited."""
    allow(request, "sessions")
    s = store(request)
    session = await s.sessions.get(session_id)
    calls = await s.calls.list(200, session_id)
    for call in calls:
        notices = call.get("notices") or "[]"
        call["notices"] = json.loads(notices) if isinstance(notices, str) else notices
    await s.audit.append_by(actor(request), "console.session.viewed", "session", str(session_id),
                            session_id=session_id, details={"via": "console"})
    listening = await listen_grant(request, calls)
    access = await s.audit.list(session_id=session_id, limit=50)
    return await render(request, "session.html", {
        "session": session, "state": session.state(utcnow()), "calls": calls, "access": access,
        "revealed": revealed or {}, "listening": listening, "roles": ROLES,
        "numbers": {role: participant(session, role) for role in ROLES}})


async def listen_grant(request: web.Request, calls: list[dict]) -> dict | None:
    """?listen=SEQ after the reason was given: the recording to play, if that
    audit row is this sign-in's own (the audio route checks it again)."""
    raw = request.query.get("listen", "")
    if not raw.isdigit():
        return None
    entry = await store(request).audit.entry(int(raw))
    for call in calls:
        if call.get("recording_id") and entry and grant_holds(request, entry, call["recording_id"]):
            return {"seq": entry.seq, "recording_id": str(call["recording_id"]), "call_id": str(call["id"])}
    return None


async def reveal(request: web.Request) -> web.Response:
    """One participant's number, shown in this answer only (never in a URL or
    a cookie); the reason is required and the reveal audited first."""
    allow(request, "reveal")
    session_id = path_uuid(request)
    role = await form_text(request, "role", 1, required=True)
    if role not in ROLES:
        raise Refused(422, "role must be a or b")
    reason = await form_text(request, "reason", 200, required=True)
    session = await store(request).sessions.get(session_id)
    number = participant(session, role)
    if number is None:
        raise Refused(409, "this session was anonymised: its numbers are gone")
    await store(request).audit.append_by(actor(request, reason), "number.revealed", "session", str(session_id),
                                         session_id=session_id, subject_hash=store(request).keys.lookup_hash(number),
                                         details={"role": role, "via": "console"})
    return await render_session(request, session_id, revealed={role: number})


async def set_hold(request: web.Request) -> web.Response:
    allow(request, "legal_hold")
    session_id = path_uuid(request)
    reason = await form_text(request, "reason", 200, required=True)
    await store(request).holds.set(session_id, reason, actor(request, reason))
    return redirect(f"/console/sessions/{session_id}")


async def release_hold(request: web.Request) -> web.Response:
    allow(request, "legal_hold")
    session_id = path_uuid(request)
    await store(request).holds.release(session_id, actor(request, await form_text(request, "reason", 200)))
    back = await form_text(request, "back", 40)
    return redirect("/console/privacy#holds" if back == "privacy" else f"/console/sessions/{session_id}")
