"""Calls over HTTP: the call records (list, read), and click-to-call, which asks the service to place a call.

`call_json` is also what the CLI prints for a call. A key sees only its
account's calls and places calls only on its account's sessions (another
account's answer 404, like a missing one). Each record shown writes a
`call.read` row to the disclosure ledger first.
"""
from __future__ import annotations

import uuid

from aiohttp import web

from bridge.api.context import PLACE_CALL, SETTINGS, STORE, account_id, account_name, actor
from bridge.api.errors import json_body
from bridge.api.fields import (
    MAX_TIME_LIMIT, bool_field, choice_field, int_field, limit_param, optional_int_field, refuse_unknown, text_field,
    uuid_param, uuid_query,
)
from bridge.ari import AriNotConnected
from bridge.calls.connect import ConnectRequest
from bridge.clock import utcnow
from bridge.config import Settings
from bridge.store.errors import SessionNotActive

MAX_RING_TIMEOUT = 300
KNOWN_CONNECT_FIELDS = {"from", "ring_timeout_seconds", "first_ring_timeout_seconds", "second_ring_timeout_seconds",
                        "time_limit_seconds", "record", "custom_field"}


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/sessions/{id}/calls", place_session_call)
    router.add_get("/v1/calls", list_calls)
    router.add_get("/v1/calls/{id}", get_call)


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


async def place_session_call(request: web.Request) -> web.Response:
    """Click-to-call: the service calls one participant, then the other (bridge/calls/connect.py)."""
    session_id = uuid_param(request)
    connect = connect_request(await json_body(request), request.app[SETTINGS])
    session = await request.app[STORE].sessions.get(session_id, account_id(request))
    if not session.is_live(utcnow()):
        raise SessionNotActive(f"the session is {session.state(utcnow())}")
    if request.app[PLACE_CALL] is None:
        raise AriNotConnected("this process places no calls")
    call_id = await request.app[PLACE_CALL](session, connect)
    return web.json_response({"call_id": str(call_id), "session_id": str(session.id)}, status=202,
                             headers={"Location": f"/v1/calls/{call_id}"})


async def disclosed_calls(request: web.Request, rows: list[dict], via: str) -> list[dict]:
    """The calls as JSON, once their reads are in the ledger (a `call.read` row each)."""
    await request.app[STORE].disclosures.calls_read(actor(request), rows,
                                                    {"account": account_name(request), "via": via})
    return [call_json(r) for r in rows]


async def list_calls(request: web.Request) -> web.Response:
    rows = await request.app[STORE].calls.list(limit_param(request), uuid_query(request, "session_id"),
                                               account_id(request))
    return web.json_response({"calls": await disclosed_calls(request, rows, "list")})


async def get_call(request: web.Request) -> web.Response:
    row = await request.app[STORE].calls.get(uuid_param(request), account_id(request))
    return web.json_response((await disclosed_calls(request, [row], "get"))[0])
