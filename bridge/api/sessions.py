"""Masking sessions over HTTP: create (idempotently), read, list, extend, close, and legal holds on them.

A create request's body is checked here in full, field by field, before the
store allocates a number. A key sees and changes only its account's sessions
(another account's answers 404 like a missing one), and every answer that
shows participants' numbers writes a `session.read` audit row per number
first (`store.disclosures`), and a creation its `session.created` rows, so each
person's export lists who saw theirs (bridge/privacy/ledger.py).
"""
from __future__ import annotations

import json

from aiohttp import web

from bridge.api.context import API_KEY, SETTINGS, STORE, account_id, account_name, actor
from bridge.api.errors import ApiError, invalid, json_body
from bridge.api.fields import (
    MAX_TIME_LIMIT, bool_field, checked_text, choice_field, int_field, limit_param, number_field, optional_int_field,
    refuse_unknown, text_field, time_field, url_field, uuid_field, uuid_param, window_field,
)
from bridge.clock import utcnow
from bridge.config import Settings
from bridge.privacy import purposes
from bridge.sessions import caller_id
from bridge.sessions.models import MaskingSession, SessionRequest, purpose_allowed

MAX_TTL = 366 * 86400
KNOWN_SESSION_FIELDS = {"participant_a", "participant_b", "ttl_seconds", "ttl_mode", "record", "external_ref",
                        "webhook_url", "virtual_number", "number_selection", "country_match", "purpose",
                        "allowed_window", "time_limit_seconds", "wait_audio_id",
                        "recording_channels", "caller_id_policy", "virtual_number_b", "pin_mode",
                        "pin_unknown_callers", "dnc_checked_at", "dnc_reference"}


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/sessions", create_session)
    router.add_get("/v1/sessions", list_sessions)
    router.add_get("/v1/sessions/{id}", get_session)
    router.add_patch("/v1/sessions/{id}", extend_session)
    router.add_delete("/v1/sessions/{id}", close_session)
    # Legal holds: the `subjects` scope guards them (app.py), like the erasure they hold back.
    router.add_post("/v1/sessions/{id}/legal-hold", set_legal_hold)
    router.add_delete("/v1/sessions/{id}/legal-hold", release_legal_hold)


def session_request(body: dict, settings: Settings) -> SessionRequest:
    refuse_unknown(body, KNOWN_SESSION_FIELDS)
    a = number_field(body, "participant_a", settings)
    b = number_field(body, "participant_b", settings)
    if a == b:
        raise invalid("participant_b", "participant_b must differ from participant_a")
    purpose = body.get("purpose")
    if not isinstance(purpose, str) or not purpose_allowed(purpose, settings.allowed_purposes):
        allowed = sorted(settings.allowed_purposes)
        raise invalid("purpose", "purpose is required: " + (f"one of {', '.join(allowed)}" if allowed else
                                                             "a code like delivery_order"))
    registry = purposes.registry_for(settings)
    dnc_checked_at, dnc_reference = time_field(body, "dnc_checked_at"), text_field(body, "dnc_reference", 200)
    webhook_url = url_field(body, "webhook_url", settings)
    asked_record = bool_field(body, "record", False) if "record" in body else None
    refusal = purposes.refusal_for_session(registry, purpose, asked_record, webhook_url, dnc_checked_at,
                                           dnc_reference)
    if refusal:
        raise ApiError(422, refusal.code, refusal.message, refusal.field)
    window_start, window_end = window_field(body, "allowed_window")
    return SessionRequest(
        **caller_id_fields(body, settings),
        participant_a=a, participant_b=b, purpose=purpose,
        window_starts_at=window_start, window_ends_at=window_end,
        ttl_seconds=int_field(body, "ttl_seconds", settings.default_ttl, 1, MAX_TTL),
        ttl_mode=choice_field(body, "ttl_mode", "creation", ("creation", "last_interaction")),
        record=purposes.records(registry, purpose, bool_field(body, "record", settings.record_by_default)),
        dnc_checked_at=dnc_checked_at, dnc_reference=dnc_reference,
        external_ref=text_field(body, "external_ref", 200),
        webhook_url=webhook_url,
        virtual_number=number_field(body, "virtual_number", settings, required=False),
        sticky=choice_field(body, "number_selection", settings.sticky, ("none", "prefer_sticky", "avoid_sticky")),
        country_match=bool_field(body, "country_match", True),
        quarantine_seconds=settings.quarantine_seconds,
        time_limit_seconds=optional_int_field(body, "time_limit_seconds", 1, MAX_TIME_LIMIT),
        wait_audio_id=uuid_field(body, "wait_audio_id"),
        recording_channels=int_field(body, "recording_channels", 1, 1, 2),
        pin_mode=bool_field(body, "pin_mode", False), pin_unknown_callers=bool_field(body, "pin_unknown_callers", False),
        pin_length=settings.pin_length, pin_quarantine_seconds=settings.pin_quarantine_seconds,
    )


def caller_id_fields(body: dict, settings: Settings) -> dict:
    """The caller ID policy and, under 'per_participant', B's own number if given."""
    policy = choice_field(body, "caller_id_policy", caller_id.SHARED, caller_id.POLICIES)
    if policy != caller_id.SHARED and bool_field(body, "pin_mode", False):
        raise invalid("pin_mode", "pin_mode sessions share one number: caller_id_policy must be shared")
    number_b = number_field(body, "virtual_number_b", settings, required=False)
    problem = caller_id.numbers_problem(policy, number_field(body, "virtual_number", settings, required=False),
                                        number_b)
    if problem:
        raise invalid("virtual_number_b", problem)
    return {"caller_id_policy": policy, "virtual_number_b": number_b}


def session_json(session: MaskingSession, account: str) -> dict:
    return {**session.to_json(utcnow()), "account": account}


async def disclosed(request: web.Request, sessions: list[MaskingSession], via: str) -> list[dict]:
    """The sessions as JSON, once their numbers' reads are audited."""
    account = account_name(request)
    await request.app[STORE].disclosures.sessions_read(actor(request), sessions, {"account": account, "via": via})
    return [session_json(s, account) for s in sessions]


async def create_session(request: web.Request) -> web.Response:
    settings, store = request.app[SETTINGS], request.app[STORE]
    body = await json_body(request)
    session_request_ = session_request(body, settings)
    idempotency = None
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        if not key.strip() or len(key) > 200:
            raise invalid("Idempotency-Key", "Idempotency-Key must be 1 to 200 characters")
        # Keyed: the body holds phone numbers, which a plain hash would let anyone enumerate.
        # Under each lookup key: a retry may follow a rotation (the first is the one stored).
        digest = store.keys.keyed_digests("idempotency", json.dumps(body, sort_keys=True).encode())
        idempotency = (request[API_KEY]["id"], key, digest)
    session, created = await store.sessions.create(session_request_, idempotency, account_id(request))
    # The ledger's rows before the answer; a replay writes them again, so no creation goes unrecorded.
    await store.disclosures.session_created(actor(request), session, {"account": account_name(request),
                                                                      "via": "api", "replay": not created})
    return web.json_response(session_json(session, account_name(request)), status=201 if created else 200)


async def get_session(request: web.Request) -> web.Response:
    session = await request.app[STORE].sessions.get(uuid_param(request), account_id(request))
    return web.json_response((await disclosed(request, [session], "get"))[0])


async def list_sessions(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status is not None and status not in ("active", "expired", "closed"):
        raise invalid("status", "status must be one of active, expired, closed")
    external_ref = checked_text(request.query.get("external_ref"), "external_ref", 200)
    sessions = await request.app[STORE].sessions.list(external_ref, status, limit_param(request),
                                                       account_id(request))
    return web.json_response({"sessions": await disclosed(request, sessions, "list")})


async def extend_session(request: web.Request) -> web.Response:
    session_id = uuid_param(request)
    body = await json_body(request)
    if set(body) != {"ttl_seconds"}:
        raise invalid("ttl_seconds", "only ttl_seconds can be changed")
    ttl = int_field(body, "ttl_seconds", 0, 1, MAX_TTL)
    session = await request.app[STORE].sessions.extend(session_id, ttl, account_id(request))
    return web.json_response((await disclosed(request, [session], "extend"))[0])


async def close_session(request: web.Request) -> web.Response:
    session = await request.app[STORE].sessions.close(uuid_param(request), account_id(request))
    return web.json_response((await disclosed(request, [session], "close"))[0])


# -- retention: legal hold (docs/privacy.md; erasure is in subjects.py) -------------------
# The `subjects` scope is the operator's (a privacy officer's): holds reach every account's sessions.
async def held_json(request: web.Request, session: MaskingSession, via: str) -> dict:
    account = await request.app[STORE].api_keys.account_name(session.account_id)
    await request.app[STORE].disclosures.sessions_read(actor(request), [session], {"account": account, "via": via})
    return session_json(session, account)


async def set_legal_hold(request: web.Request) -> web.Response:
    session_id = uuid_param(request)
    body = await json_body(request)
    refuse_unknown(body, {"reason"})
    reason = text_field(body, "reason", 200)
    if reason is None:
        raise invalid("reason", "reason is required: why the session is held (a case or ticket)")
    session = await request.app[STORE].holds.set(session_id, reason, actor(request))
    return web.json_response(await held_json(request, session, "legal_hold"))


async def release_legal_hold(request: web.Request) -> web.Response:
    session = await request.app[STORE].holds.release(uuid_param(request), actor(request))
    return web.json_response(await held_json(request, session, "legal_hold"))
