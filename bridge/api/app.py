"""The HTTP API business back ends use: sessions, calls, recordings, the pool.

Every `/v1` route needs an API key (`Authorization: Bearer mk_...`) with the
route's scope; `/healthz`, `/readyz`, `/metrics` and `/openapi.json` do not.
The OpenAPI document beside this file describes every route and error.
Reading a recording and changing the pool write audit rows (who, from where,
why: `X-Audit-Reason`) before they answer.
"""
from __future__ import annotations


import json
import uuid
from importlib import resources
from typing import Awaitable, Callable

from aiohttp import web

from bridge import metrics
from bridge.api import subjects
from bridge.api.audio import stream_sealed
from bridge.api.context import (
    ACTIVE_CALLS, API_KEY, EXTRA_METRICS, PLACE_CALL, READINESS, SETTINGS, STORE, actor,
)
from bridge.api.errors import ApiError, error_middleware, invalid, json_body
from bridge.api.fields import (
    MAX_TIME_LIMIT, bool_field, checked_text, choice_field, int_field, limit_param, number_field, optional_int_field,
    refuse_unknown, text_field, time_query, url_field, uuid_field, uuid_param, uuid_query, window_field,
)
from bridge.ari import AriNotConnected
from bridge.calls.connect import ConnectRequest
from bridge.config import Settings
from bridge.logs import get_logger
from bridge.privacy.audit import entry_json
from bridge.privacy.crypto import CryptoError
from bridge.privacy.numbers import InvalidNumber, parse_e164
from bridge.recordings import wait_audio
from bridge.recordings.reading import AudioUnavailable, open_audio
from bridge.recordings.sealed import SealedFileError
from bridge.sessions import caller_id
from bridge.sessions.models import MaskingSession, SessionRequest, purpose_allowed
from bridge.store import SessionNotActive, Store, StoreUnavailable, utcnow

SCOPES = ("sessions", "numbers", "recordings", "audit", "subjects")
MAX_TTL = 366 * 86400
MAX_RING_TIMEOUT = 300
log = get_logger("bridge.api")


def make_app(store: Store, settings: Settings,
             readiness: Callable[[], Awaitable[dict[str, bool]]] | None = None,
             active_calls: Callable[[], int] = lambda: 0,
             extra_metrics: Callable[[], list[str]] = lambda: [],
             place_call: Callable[[MaskingSession, ConnectRequest], Awaitable[uuid.UUID]] | None = None,
             ) -> web.Application:
    """`place_call` starts a click-to-call (the service's); without it, such requests answer 503."""
    app = web.Application(middlewares=[error_middleware, auth_middleware], client_max_size=64 * 1024)
    app[STORE], app[SETTINGS] = store, settings
    app[READINESS] = readiness or (lambda: _database_ready(store))
    app[ACTIVE_CALLS] = active_calls
    app[EXTRA_METRICS] = extra_metrics
    app[PLACE_CALL] = place_call
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics_endpoint)
    r.add_get("/openapi.json", openapi)
    r.add_post("/v1/sessions", create_session)
    r.add_get("/v1/sessions", list_sessions)
    r.add_get("/v1/sessions/{id}", get_session)
    r.add_patch("/v1/sessions/{id}", extend_session)
    r.add_delete("/v1/sessions/{id}", close_session)
    r.add_post("/v1/sessions/{id}/calls", place_session_call)
    r.add_get("/v1/calls", list_calls)
    r.add_get("/v1/calls/{id}", get_call)
    r.add_get("/v1/recordings/{id}", get_recording)
    r.add_get("/v1/recordings/{id}/audio", get_recording_audio)
    r.add_post("/v1/wait-audio", add_wait_audio)
    r.add_get("/v1/wait-audio", list_wait_audio)
    r.add_delete("/v1/wait-audio/{id}", delete_wait_audio)
    r.add_post("/v1/numbers", add_number)
    r.add_get("/v1/numbers", list_numbers)
    r.add_delete("/v1/numbers/{number}", retire_number)
    r.add_get("/v1/webhooks/events", list_webhook_events)
    r.add_post("/v1/webhooks/events/retry", retry_webhook_events)
    r.add_get("/v1/audit", list_audit)
    subjects.add_routes(r)
    add_retention_routes(r)
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
    key = await request.app[STORE].api_key_for_token(header[7:].strip())
    if key is None:
        raise ApiError(401, "unauthenticated", "unknown or revoked API key")
    scope = scope_for(request.path)
    if scope and scope not in key["scopes"]:
        raise ApiError(403, "forbidden", f"this API key lacks the '{scope}' scope")
    request[API_KEY] = key
    return await handler(request)


KNOWN_SESSION_FIELDS = {"participant_a", "participant_b", "ttl_seconds", "ttl_mode", "record", "external_ref",
                        "webhook_url", "virtual_number", "number_selection", "country_match", "purpose",
                        "allowed_window", "time_limit_seconds", "wait_audio_id",
                        "recording_channels", "caller_id_policy", "virtual_number_b", "pin_mode",
                        "pin_unknown_callers"}
KNOWN_CONNECT_FIELDS = {"from", "ring_timeout_seconds", "first_ring_timeout_seconds", "second_ring_timeout_seconds",
                        "time_limit_seconds", "record", "custom_field"}


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
    window_start, window_end = window_field(body, "allowed_window")
    return SessionRequest(
        **caller_id_fields(body, settings),
        participant_a=a, participant_b=b, purpose=purpose,
        window_starts_at=window_start, window_ends_at=window_end,
        ttl_seconds=int_field(body, "ttl_seconds", settings.default_ttl, 1, MAX_TTL),
        ttl_mode=choice_field(body, "ttl_mode", "creation", ("creation", "last_interaction")),
        record=bool_field(body, "record", settings.record_by_default),
        external_ref=text_field(body, "external_ref", 200),
        webhook_url=url_field(body, "webhook_url"),
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


def connect_request(body: dict, settings: Settings) -> ConnectRequest:
    """A click-to-call request; `ring_timeout_seconds` serves both legs unless
    `first_`/`second_ring_timeout_seconds` set a leg's own."""
    refuse_unknown(body, KNOWN_CONNECT_FIELDS)
    first = choice_field(body, "from", "", ("a", "b"))
    ring = int_field(body, "ring_timeout_seconds", min(settings.dial_timeout, MAX_RING_TIMEOUT), 1, MAX_RING_TIMEOUT)
    return ConnectRequest(
        first=first,
        first_ring_timeout_seconds=int_field(body, "first_ring_timeout_seconds", ring, 1, MAX_RING_TIMEOUT),
        second_ring_timeout_seconds=int_field(body, "second_ring_timeout_seconds", ring, 1, MAX_RING_TIMEOUT),
        time_limit_seconds=optional_int_field(body, "time_limit_seconds", 1, MAX_TIME_LIMIT),
        record=None if body.get("record") is None else bool_field(body, "record", True),
        custom_field=text_field(body, "custom_field", 256),
    )


# -- representations ---------------------------------------------------------------
def session_json(session: MaskingSession) -> dict:
    return session.to_json(utcnow())


CALL_FIELDS = ("session_id", "virtual_number", "direction", "disposition", "reject_reason", "dial_status",
               "hangup_by", "caller_hangup_cause", "callee_hangup_cause", "setup_ms", "recorded", "kind",
               "custom_field", "time_limit_seconds", "pin_attempts")


def call_json(row: dict) -> dict:
    out = {"id": str(row["id"])}
    for name in CALL_FIELDS:
        value = row.get(name)
        out[name] = str(value) if isinstance(value, uuid.UUID) else value
    for name in ("started_at", "caller_answered_at", "ringing_at", "answered_at", "ended_at"):
        out[name] = row[name].isoformat() if row.get(name) else None
    out["talk_seconds"] = float(row["talk_seconds"]) if row.get("talk_seconds") is not None else None
    out["recording_id"] = str(row["recording_id"]) if row.get("recording_id") else None
    return out


def recording_json(row: dict) -> dict:
    return {"id": str(row["id"]), "call_id": str(row["call_id"]), "session_id": str(row["session_id"]),
            "format": row["format"], "bytes": row["bytes"], "duration_seconds": float(row["duration_seconds"]),
            "sha256": row["sha256"], "created_at": row["created_at"].isoformat(), "sealed": row["sealed"],
            "shredded_at": row["shredded_at"].isoformat() if row["shredded_at"] else None}


def number_json(row: dict) -> dict:
    return {"number": row["number"], "status": row["status"], "reserved": row["reserved"],
            "country": row["country"], "live_sessions": row["live_sessions"], "pin_mode": row["pin_mode"],
            "last_allocated_at": row["last_allocated_at"].isoformat() if row["last_allocated_at"] else None}


# -- handlers ----------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _database_ready(store: Store) -> dict[str, bool]:
    try:
        await store.ping()
        return {"database": True}
    except StoreUnavailable:
        return {"database": False}


async def readyz(request: web.Request) -> web.Response:
    checks = await request.app[READINESS]()
    ready = all(checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    lines = [*metrics.calls_total.render(), *metrics.call_setup_seconds.render(),
             *metrics.webhook_failures_total.render(), *metrics.webhooks_delivered_total.render(),
             *metrics.retention_purged_total.render(),
             *metrics.gauge("masking_active_calls", "Calls in progress.", request.app[ACTIVE_CALLS]()),
             *request.app[EXTRA_METRICS]()]
    try:
        pool = await request.app[STORE].pool_counts()
        lines += metrics.gauge("masking_pool_numbers_in_use", "Pool numbers with live sessions.", pool["in_use"])
        lines += metrics.gauge("masking_pool_numbers_free", "Pool numbers with no live session.",
                               pool["active"] - pool["in_use"])
    except StoreUnavailable:
        pass
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


async def openapi(request: web.Request) -> web.Response:
    text = (resources.files("bridge.api") / "openapi.json").read_text()
    return web.Response(text=text, content_type="application/json")


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
        digest = store.keys.keyed_digest("idempotency", json.dumps(body, sort_keys=True).encode())
        idempotency = (request[API_KEY]["id"], key, digest)
    session, created = await store.create_session(session_request_, idempotency)
    return web.json_response(session_json(session), status=201 if created else 200)


async def get_session(request: web.Request) -> web.Response:
    return web.json_response(session_json(await request.app[STORE].get_session(uuid_param(request))))


async def list_sessions(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status is not None and status not in ("active", "expired", "closed"):
        raise invalid("status", "status must be one of active, expired, closed")
    external_ref = checked_text(request.query.get("external_ref"), "external_ref", 200)
    sessions = await request.app[STORE].list_sessions(external_ref, status, limit_param(request))
    return web.json_response({"sessions": [session_json(s) for s in sessions]})


async def extend_session(request: web.Request) -> web.Response:
    session_id = uuid_param(request)
    body = await json_body(request)
    if set(body) != {"ttl_seconds"}:
        raise invalid("ttl_seconds", "only ttl_seconds can be changed")
    ttl = int_field(body, "ttl_seconds", 0, 1, MAX_TTL)
    return web.json_response(session_json(await request.app[STORE].extend_session(session_id, ttl)))


async def close_session(request: web.Request) -> web.Response:
    return web.json_response(session_json(await request.app[STORE].close_session(uuid_param(request))))


async def place_session_call(request: web.Request) -> web.Response:
    """Click-to-call: the service calls one participant, then the other (bridge/calls/connect.py)."""
    session_id = uuid_param(request)
    connect = connect_request(await json_body(request), request.app[SETTINGS])
    session = await request.app[STORE].get_session(session_id)
    if not session.is_live(utcnow()):
        raise SessionNotActive(f"the session is {session.state(utcnow())}")
    if request.app[PLACE_CALL] is None:
        raise AriNotConnected("this process places no calls")
    call_id = await request.app[PLACE_CALL](session, connect)
    return web.json_response({"call_id": str(call_id), "session_id": str(session.id)}, status=202,
                             headers={"Location": f"/v1/calls/{call_id}"})


async def list_calls(request: web.Request) -> web.Response:
    rows = await request.app[STORE].list_calls(limit_param(request), uuid_query(request, "session_id"))
    return web.json_response({"calls": [call_json(r) for r in rows]})


async def get_call(request: web.Request) -> web.Response:
    return web.json_response(call_json(await request.app[STORE].call(uuid_param(request))))


async def audit_read(request: web.Request, action: str, recording: dict) -> None:
    """Written before the answer: no recording is read without its audit row."""
    await request.app[STORE].audit_by(actor(request), action, "recording", str(recording["id"]),
                                      session_id=recording["session_id"],
                                      details={"call_id": str(recording["call_id"]),
                                               "purpose": recording.get("purpose")})


async def get_recording(request: web.Request) -> web.Response:
    row = await request.app[STORE].recording(uuid_param(request))
    await audit_read(request, "recording.read", row)
    return web.json_response(recording_json(row))


async def get_recording_audio(request: web.Request) -> web.StreamResponse:
    store, recording_id = request.app[STORE], uuid_param(request)
    row = await store.recording(recording_id)
    try:
        audio = await open_audio(store, row)
    except AudioUnavailable as exc:
        raise shredded() if exc.reason == "shredded" else \
            ApiError(410, "recording_gone", "the recording's audio is no longer stored") from None
    except CryptoError as exc:
        log.error("recording.unreadable", recording_id=str(recording_id), error=type(exc).__name__)
        raise ApiError(500, "internal_error", "the recording's audio cannot be decrypted") from None
    await audit_read(request, "recording.audio", row)
    headers = {"Content-Type": f"audio/{row['format']}",
               "Content-Disposition": f'attachment; filename="{row["id"]}.{row["format"]}"'}
    if audio.dek is None:  # stored before sealing existed, and not sealed yet
        return web.FileResponse(audio.path, headers=headers)  # answers Range (206) and HEAD itself
    try:
        return await stream_sealed(request, audio.path, audio.dek, recording_id, headers)
    except SealedFileError as exc:
        log.error("recording.unreadable", recording_id=str(recording_id), error=type(exc).__name__)
        raise ApiError(500, "internal_error", "the recording's audio cannot be decrypted") from None


def shredded() -> ApiError:
    return ApiError(410, "recording_shredded", "the recording was shredded: its audio can no longer be decrypted")


MAX_WAIT_AUDIO_BYTES = 8 * 1024 * 1024


async def add_wait_audio(request: web.Request) -> web.Response:
    """The body is the WAV itself (any PCM WAV; converted for Asterisk)."""
    if request.content_type not in ("audio/wav", "audio/x-wav", "audio/wave"):
        raise ApiError(415, "unsupported_media_type", "send the audio as a WAV body (Content-Type: audio/wav)")
    upload = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        upload += chunk
        if len(upload) > MAX_WAIT_AUDIO_BYTES:
            raise ApiError(413, "payload_too_large", f"wait audio may be at most {MAX_WAIT_AUDIO_BYTES} bytes")
    name = checked_text(request.query.get("name"), "name", 200) or "wait audio"
    row = await wait_audio.add_wait_audio(request.app[STORE], request.app[SETTINGS], bytes(upload), name,
                                          actor(request))
    return web.json_response(wait_audio_json(row), status=201)


async def list_wait_audio(request: web.Request) -> web.Response:
    return web.json_response({"wait_audio": [wait_audio_json(r) for r in await request.app[STORE].list_wait_audio()]})


async def delete_wait_audio(request: web.Request) -> web.Response:
    await wait_audio.delete_wait_audio(request.app[STORE], request.app[SETTINGS], uuid_param(request),
                                       actor(request))
    return web.Response(status=204)


def wait_audio_json(row: dict) -> dict:
    return {"id": str(row["id"]), "name": row["name"], "bytes": row["bytes"],
            "duration_seconds": float(row["duration_seconds"]), "sha256": row["sha256"],
            "created_at": row["created_at"].isoformat()}


async def add_number(request: web.Request) -> web.Response:
    body = await json_body(request)
    number = number_field(body, "number", request.app[SETTINGS])
    reserved = bool_field(body, "reserved", False)
    row = await request.app[STORE].add_number(number, reserved, by=actor(request),
                                              pin_mode=bool_field(body, "pin_mode", False))
    return web.json_response(number_json(row), status=201)


async def list_numbers(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status is not None and status not in ("active", "retired"):
        raise invalid("status", "status must be active or retired")
    return web.json_response({"numbers": [number_json(r) for r in await request.app[STORE].list_numbers(status)]})


async def retire_number(request: web.Request) -> web.Response:
    try:
        number = parse_e164(request.match_info["number"])
    except InvalidNumber:
        raise ApiError(404, "not_found", "no such number in the pool") from None
    await request.app[STORE].retire_number(number, by=actor(request))
    return web.Response(status=204)


async def list_webhook_events(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status is not None and status not in ("pending", "delivered", "dead"):
        raise invalid("status", "status must be pending, delivered or dead")
    rows = await request.app[STORE].list_events(status, limit_param(request))
    return web.json_response({"events": [
        {"id": str(r["event_id"]), "type": r["event_type"], "session_id": str(r["session_id"]) if r["session_id"]
         else None, "status": r["status"], "attempts": r["attempts"], "last_error": r["last_error"],
         "created_at": r["created_at"].isoformat(),
         "delivered_at": r["delivered_at"].isoformat() if r["delivered_at"] else None} for r in rows]})


async def retry_webhook_events(request: web.Request) -> web.Response:
    return web.json_response({"requeued": await request.app[STORE].retry_dead_events()})


async def list_audit(request: web.Request) -> web.Response:
    rows = await request.app[STORE].list_audit(
        action=checked_text(request.query.get("action"), "action", 100), session_id=uuid_query(request, "session_id"),
        since=time_query(request, "since"), limit=limit_param(request))
    return web.json_response({"entries": [entry_json(r) for r in rows]})


# -- retention: legal hold (docs/privacy.md; erasure is in subjects.py) -------------------
def add_retention_routes(r: web.UrlDispatcher) -> None:
    r.add_post("/v1/sessions/{id}/legal-hold", set_legal_hold)
    r.add_delete("/v1/sessions/{id}/legal-hold", release_legal_hold)


async def set_legal_hold(request: web.Request) -> web.Response:
    session_id = uuid_param(request)
    body = await json_body(request)
    refuse_unknown(body, {"reason"})
    reason = text_field(body, "reason", 200)
    if reason is None:
        raise invalid("reason", "reason is required: why the session is held (a case or ticket)")
    session = await request.app[STORE].set_legal_hold(session_id, reason, actor(request))
    return web.json_response(session_json(session))


async def release_legal_hold(request: web.Request) -> web.Response:
    session = await request.app[STORE].release_legal_hold(uuid_param(request), actor(request))
    return web.json_response(session_json(session))
