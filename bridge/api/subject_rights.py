"""Rights of access and correction over HTTP (the `subjects` scope): the
identity check of a request, and a correction carried out
(bridge/privacy/rights.py). Numbers travel in the JSON body, never in a URL."""
from __future__ import annotations

from aiohttp import web

from bridge.api.context import SETTINGS, STORE, actor
from bridge.api.errors import ApiError, json_body
from bridge.api.fields import choice_field, number_field, refuse_unknown, text_field, uuid_field, uuid_param
from bridge.clock import utcnow
from bridge.logs import get_logger
from bridge.privacy.audit import clean_reason
from bridge.privacy.rights import VERIFY_METHODS, IdentityNotVerified, NothingToCorrect
from bridge.privacy.subject_access import RequestMismatch, RequestNotOpen

log = get_logger("bridge.api")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/subjects/requests/{id}/verify", verify_request)
    router.add_post("/v1/subjects/correct", correct_subject)


def rights_refusal(exc: Exception) -> ApiError:
    if isinstance(exc, RequestNotOpen):
        return ApiError(409, "request_not_open", str(exc))
    if isinstance(exc, IdentityNotVerified):
        return ApiError(409, "identity_not_verified", str(exc))
    if isinstance(exc, NothingToCorrect):
        return ApiError(422, "invalid_field", str(exc), "corrected_number")
    return ApiError(422, "request_mismatch", str(exc), "request_id")


async def verify_request(request: web.Request) -> web.Response:
    """Record how the requester's identity was checked (once)."""
    request_id = uuid_param(request)
    body = await json_body(request)
    refuse_unknown(body, {"method", "checked_by"})
    method = choice_field(body, "method", "", VERIFY_METHODS)
    checked_by = clean_reason(text_field(body, "checked_by", 200))
    try:
        row = await request.app[STORE].subjects.verify_request(request_id, method, actor(request), checked_by)
    except RequestNotOpen as exc:
        raise rights_refusal(exc) from None
    return web.json_response(row.to_json(utcnow()))


async def correct_subject(request: web.Request) -> web.Response:
    """Correct the number held for a person in every session holding it, and
    tell the past year's webhook recipients of those sessions."""
    settings = request.app[SETTINGS]
    body = await json_body(request)
    refuse_unknown(body, {"number", "corrected_number", "request_id"})
    number = number_field(body, "number", settings)
    corrected = number_field(body, "corrected_number", settings)
    try:
        report = await request.app[STORE].corrections.correct_number(number, corrected, actor(request),
                                                                    uuid_field(body, "request_id"))
    except (RequestNotOpen, RequestMismatch, IdentityNotVerified, NothingToCorrect) as exc:
        raise rights_refusal(exc) from None
    log.info("subject.corrected", subject=report.subject, sessions=len(report.sessions_corrected),
             recipients=report.recipients_notified, audit_seq=report.audit_seq)
    return web.json_response(report.to_json())
