"""The virtual-number pool over HTTP (the `numbers` scope): add, list, retire.

Changes to the pool write audit rows (who, from where, why) before they answer.
"""
from __future__ import annotations

from aiohttp import web

from bridge.api.context import SETTINGS, STORE, actor
from bridge.api.errors import ApiError, invalid, json_body
from bridge.api.fields import bool_field, number_field
from bridge.numbering import InvalidNumber, parse_e164


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/numbers", add_number)
    router.add_get("/v1/numbers", list_numbers)
    router.add_delete("/v1/numbers/{number}", retire_number)


def number_json(row: dict) -> dict:
    return {"number": row["number"], "status": row["status"], "reserved": row["reserved"],
            "country": row["country"], "live_sessions": row["live_sessions"], "pin_mode": row["pin_mode"],
            "last_allocated_at": row["last_allocated_at"].isoformat() if row["last_allocated_at"] else None}


async def add_number(request: web.Request) -> web.Response:
    body = await json_body(request)
    number = number_field(body, "number", request.app[SETTINGS])
    reserved = bool_field(body, "reserved", False)
    row = await request.app[STORE].numbers.add(number, reserved, by=actor(request),
                                              pin_mode=bool_field(body, "pin_mode", False))
    return web.json_response(number_json(row), status=201)


async def list_numbers(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status is not None and status not in ("active", "retired"):
        raise invalid("status", "status must be active or retired")
    return web.json_response({"numbers": [number_json(r) for r in await request.app[STORE].numbers.list(status)]})


async def retire_number(request: web.Request) -> web.Response:
    try:
        number = parse_e164(request.match_info["number"])
    except InvalidNumber:
        raise ApiError(404, "not_found", "no such number in the pool") from None
    await request.app[STORE].numbers.retire(number, by=actor(request))
    return web.Response(status=204)
