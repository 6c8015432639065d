"""The privacy desk, for the data protection officer: subject requests by due
date (overdue ones first and in words), opened, exported and closed here;
legal holds; the audit trail's verification; retention and the next purge.

A request keeps only its subject's keyed hash and a masked hint, so an
export asks for the number again, and the store checks it is the request's.
"""
from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta

from aiohttp import web

from bridge.clock import utcnow
from bridge.console.audit_check import latest_check, verify_now
from bridge.console.context import Refused, actor, allow, form_text, path_uuid, settings, store
from bridge.console.render import redirect, render
from bridge.console.state import due
from bridge.numbering import InvalidNumber, parse_e164
from bridge.privacy.audit import clean_reason
from bridge.privacy.retention import RetentionPolicy
from bridge.privacy.rights import VERIFY_METHODS, IdentityNotVerified
from bridge.privacy.subject_access import (
    MAX_NOTES, REQUEST_KINDS, RequestMismatch, RequestNotOpen, due_at, received_at,
)
from bridge.subjects.export import export_subject

PIECE = 64 * 1024
CLOSED_SHOWN = 20


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/privacy", desk)
    router.add_post("/privacy/requests", open_request)
    router.add_post("/privacy/requests/{id}/close", close_request)
    router.add_post("/privacy/requests/{id}/verify", verify_request)
    router.add_post("/privacy/requests/{id}/export", export)
    router.add_post("/privacy/audit/verify", verify_audit)


async def desk(request: web.Request) -> web.Response:
    allow(request, "privacy")
    s, config, now = store(request), settings(request), utcnow()
    open_requests = await s.subjects.list_requests("open", limit=500)
    closed = sorted([*await s.subjects.list_requests("done", limit=200),
                     *await s.subjects.list_requests("refused", limit=200)],
                    key=lambda r: r.completed_at, reverse=True)[:CLOSED_SHOWN]
    await s.audit.append_by(actor(request), "console.subject_requests.viewed", "subject_request", "desk",
                            details={"via": "console", "open": len(open_requests)})
    last_purge = await s.audit.list(action="purge.run", limit=1)
    interval = config.purge_interval_seconds
    return await render(request, "privacy.html", {
        "open_requests": [(r, due(r.status, r.due_at, now)) for r in open_requests],
        "closed_requests": closed, "kinds": REQUEST_KINDS, "request_days": config.subject_request_days,
        "holds": await s.holds.list(), "check": await latest_check(request),
        "policy": RetentionPolicy.from_settings(config), "purge_interval": interval,
        "last_purge": last_purge[0] if last_purge else None,
        "next_purge": last_purge[0].at + timedelta(seconds=interval) if last_purge and interval else None,
        "max_notes": MAX_NOTES, "today": now.date().isoformat(), "verify_methods": VERIFY_METHODS})


def number_from(raw: str, region: str) -> str:
    try:
        return parse_e164(raw, region)
    except InvalidNumber as exc:
        raise Refused(422, f"the number: {exc}") from None


async def open_request(request: web.Request) -> web.Response:
    allow(request, "privacy")
    config = settings(request)
    kind = await form_text(request, "kind", 20, required=True)
    if kind not in REQUEST_KINDS:
        raise Refused(422, f"kind must be one of {', '.join(REQUEST_KINDS)}")
    number = number_from(await form_text(request, "number", 40, required=True), config.default_region)
    now = utcnow()
    try:
        received = received_at(await form_text(request, "received", 40), now)
    except ValueError as exc:
        raise Refused(422, str(exc)) from None
    row = await store(request).subjects.open_request(kind, number, received,
                                                     due_at(received, config.subject_request_days), actor(request),
                                                     await form_text(request, "notes", MAX_NOTES))
    return redirect(f"/console/privacy#request-{row.id}")


async def close_request(request: web.Request) -> web.Response:
    allow(request, "privacy")
    request_id = path_uuid(request)
    status = await form_text(request, "status", 10) or "done"
    if status not in ("done", "refused"):
        raise Refused(422, "a request is closed as done or refused")
    try:
        await store(request).subjects.complete_request(request_id, actor(request), status,
                                                       await form_text(request, "notes", MAX_NOTES))
    except RequestNotOpen as exc:
        raise Refused(409, str(exc)) from None
    return redirect("/console/privacy#requests")


async def verify_request(request: web.Request) -> web.Response:
    """Record how the requester's identity was checked: an export waits for it."""
    allow(request, "privacy")
    request_id = path_uuid(request)
    method = await form_text(request, "method", 20)
    if method not in VERIFY_METHODS:
        raise Refused(422, f"the method must be one of {', '.join(VERIFY_METHODS)}")
    checked_by = clean_reason(await form_text(request, "checked_by", 200, required=True))
    try:
        await store(request).subjects.verify_request(request_id, method, actor(request), checked_by)
    except RequestNotOpen as exc:
        raise Refused(409, str(exc)) from None
    return redirect("/console/privacy#requests")


async def export(request: web.Request) -> web.StreamResponse:
    """The request's export (the zip the API's /v1/subjects/export makes); the
    request is marked done once it is written."""
    allow(request, "privacy")
    request_id = path_uuid(request)
    number = number_from(await form_text(request, "number", 40, required=True), settings(request).default_region)
    include_audio = await form_text(request, "include_audio", 5) is not None
    include_mixed = await form_text(request, "include_mixed_audio", 5) is not None
    reason = await form_text(request, "reason", 200)
    now = utcnow()
    with tempfile.TemporaryFile(prefix="masking-export-") as out:  # audio can be large: not in memory
        try:
            await export_subject(store(request), number, out, actor(request, reason), now, include_audio, request_id,
                                 include_mixed)
        except (RequestNotOpen, RequestMismatch, IdentityNotVerified) as exc:
            raise Refused(422 if isinstance(exc, RequestMismatch) else 409, str(exc)) from None
        size = out.tell()
        out.seek(0)
        response = web.StreamResponse(headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="subject-export-{now:%Y%m%dT%H%M%SZ}.zip"'})
        response.content_length = size
        await response.prepare(request)
        while piece := await asyncio.to_thread(out.read, PIECE):
            await response.write(piece)
        await response.write_eof()
    return response


async def verify_audit(request: web.Request) -> web.Response:
    allow(request, "audit")
    await verify_now(request)
    return redirect("/console/privacy#audit")
