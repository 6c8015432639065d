"""Data subjects' requests over HTTP, for privacy officers (the `subjects` scope):
export, request tracking, erasure.

The number is always in the JSON body, never in a URL: paths and query
strings land in access logs. An export answers `application/zip`.
"""
from __future__ import annotations

import asyncio
import tempfile

from aiohttp import web

from bridge.api.context import SETTINGS, STORE, actor
from bridge.api.errors import ApiError, invalid, json_body
from bridge.api.fields import (
    bool_field, checked_text, choice_field, limit_param, number_field, refuse_unknown, text_field, uuid_field,
    uuid_param,
)
from bridge.api.subject_rights import rights_refusal
from bridge.clock import utcnow
from bridge.logs import get_logger
from bridge.privacy.subject_access import (
    MAX_NOTES, REQUEST_KINDS, WITHDRAWAL_CONSEQUENCES, RequestMismatch, RequestNotOpen, SubjectRequest, due_at,
    received_at,
)
from bridge.privacy.rights import IdentityNotVerified
from bridge.recordings.backfill import plaintext_retirer
from bridge.subjects.export import export_subject

PIECE = 64 * 1024
log = get_logger("bridge.api")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/subjects/export", export)
    router.add_post("/v1/subjects/requests", open_request)
    router.add_get("/v1/subjects/requests", list_requests)
    router.add_get("/v1/subjects/requests/{id}", get_request)
    router.add_post("/v1/subjects/requests/{id}/close", close_request)
    router.add_post("/v1/subjects/erase", erase_subject)
    router.add_post("/v1/subjects/withdraw", withdraw)


def request_json(request: SubjectRequest) -> dict:
    return request.to_json(utcnow())


def refused(exc: Exception) -> ApiError:
    if isinstance(exc, RequestNotOpen):
        return ApiError(409, "request_not_open", str(exc))
    return ApiError(422, "request_mismatch", str(exc), "request_id")


async def export(request: web.Request) -> web.StreamResponse:
    """The zip of everything held about the number in the body (see docs/privacy.md)."""
    body = await json_body(request)
    refuse_unknown(body, {"number", "include_audio", "include_mixed_audio", "request_id"})
    number = number_field(body, "number", request.app[SETTINGS])
    include_audio = bool_field(body, "include_audio", False)
    include_mixed = bool_field(body, "include_mixed_audio", False)
    request_id = uuid_field(body, "request_id")
    now = utcnow()
    with tempfile.TemporaryFile(prefix="masking-export-") as out:  # audio can be large: not in memory
        try:
            await export_subject(request.app[STORE], number, out, actor(request), now, include_audio, request_id,
                                 include_mixed)
        except (RequestNotOpen, RequestMismatch, IdentityNotVerified) as exc:
            raise rights_refusal(exc) from None
        size = out.tell()
        out.seek(0)
        response = web.StreamResponse(headers={
            "Content-Type": "application/zip", "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="subject-export-{now:%Y%m%dT%H%M%SZ}.zip"'})
        response.content_length = size
        await response.prepare(request)
        while piece := await asyncio.to_thread(out.read, PIECE):
            await response.write(piece)
        await response.write_eof()
    return response


async def open_request(request: web.Request) -> web.Response:
    return await opened(request, await json_body(request))


async def withdraw(request: web.Request) -> web.Response:
    """A person withdraws consent (PDPA s16): a request of kind `withdrawal`."""
    body = await json_body(request)
    refuse_unknown(body, {"number", "received_at", "notes"})
    return await opened(request, {**body, "kind": "withdrawal"})


async def opened(request: web.Request, body: dict) -> web.Response:
    """Track the request in `body`; a withdrawal is carried out at once."""
    settings = request.app[SETTINGS]
    refuse_unknown(body, {"kind", "number", "received_at", "notes"})
    kind = choice_field(body, "kind", "", REQUEST_KINDS)
    number = number_field(body, "number", settings)
    raw = text_field(body, "received_at", 40)
    now = utcnow()
    try:
        received = received_at(raw, now)
    except ValueError as exc:
        raise invalid("received_at", str(exc)) from None
    notes = text_field(body, "notes", MAX_NOTES)
    due = due_at(received, settings.subject_request_days)
    if kind == "withdrawal":  # carried out at once: nothing to wait for
        row = await request.app[STORE].consent.withdraw(number, actor(request), received, due, notes)
        answer = {**request_json(row), "do_not_record": True, "consequences": list(WITHDRAWAL_CONSEQUENCES)}
        return web.json_response(answer, status=201, headers={"Location": f"/v1/subjects/requests/{row.id}"})
    row = await request.app[STORE].subjects.open_request(kind, number, received, due, actor(request), notes)
    return web.json_response(request_json(row), status=201, headers={"Location": f"/v1/subjects/requests/{row.id}"})


async def list_requests(request: web.Request) -> web.Response:
    query = request.query
    status = query.get("status")
    if status is not None and status not in ("open", "done", "refused"):
        raise invalid("status", "status must be one of open, done, refused")
    kind = query.get("kind")
    if kind is not None and kind not in REQUEST_KINDS:
        raise invalid("kind", f"kind must be one of {', '.join(REQUEST_KINDS)}")
    overdue = query.get("overdue", "false")
    if overdue not in ("true", "false"):
        raise invalid("overdue", "overdue must be true or false")
    rows = await request.app[STORE].subjects.list_requests(status, overdue == "true", kind, limit_param(request))
    return web.json_response({"requests": [request_json(r) for r in rows]})


async def get_request(request: web.Request) -> web.Response:
    row, _ = await request.app[STORE].subjects.request(uuid_param(request))
    return web.json_response(request_json(row))


async def close_request(request: web.Request) -> web.Response:
    request_id = uuid_param(request)
    body = await json_body(request)
    refuse_unknown(body, {"status", "notes"})
    status = choice_field(body, "status", "done", ("done", "refused"))
    notes = checked_text(body.get("notes"), "notes", MAX_NOTES)
    try:
        row = await request.app[STORE].subjects.complete_request(request_id, actor(request), status, notes)
    except RequestNotOpen as exc:
        raise refused(exc) from None
    return web.json_response(request_json(row))


async def erase_subject(request: web.Request) -> web.Response:
    """The number travels in the body, never in the URL (URLs land in access logs)."""
    body = await json_body(request)
    refuse_unknown(body, {"number", "request_id"})
    number = number_field(body, "number", request.app[SETTINGS])
    try:
        store = request.app[STORE]
        report = await store.erasure.erase(number, actor(request), request_id=uuid_field(body, "request_id"),
                                           webhook_url=request.app[SETTINGS].webhook_url or None,
                                           retire=plaintext_retirer(store))
    except (RequestNotOpen, RequestMismatch) as exc:
        raise refused(exc) from None
    log.info("subject.erased", subject=report.subject, sessions=len(report.sessions_erased),
             kept=len(report.kept), audit_seq=report.audit_seq)
    return web.json_response(report.to_json())
