"""Validation of request bodies, path parameters and query strings, shared by every resource.

Each check answers the same 422 `invalid_field` (or 404 for a bad path id) with
the field's name, so clients see one error shape whichever route they call.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from aiohttp import web

from bridge.api.errors import ApiError, invalid
from bridge.config import Settings
from bridge.numbering import InvalidNumber, parse_e164
from bridge.outbound.policy import url_problem

MAX_TIME_LIMIT = 86400  # a call's time limit, set by a session or by one click-to-call


def number_field(body: dict, name: str, settings: Settings, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise invalid(name, f"{name} is required")
        return None
    if not isinstance(value, str):
        raise invalid(name, f"{name} must be a string in E.164 form")
    try:
        return parse_e164(value, settings.default_region)
    except InvalidNumber as exc:
        raise ApiError(422, "invalid_number", f"{name}: {exc}", name) from None


def int_field(body: dict, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(name, f"{name} must be an integer")
    if not low <= value <= high:
        raise invalid(name, f"{name} must be between {low} and {high}")
    return value


def optional_int_field(body: dict, name: str, low: int, high: int) -> int | None:
    return None if body.get(name) is None else int_field(body, name, 0, low, high)


def bool_field(body: dict, name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise invalid(name, f"{name} must be true or false")
    return value


def choice_field(body: dict, name: str, default: str, choices: tuple[str, ...]) -> str:
    value = body.get(name, default)
    if value not in choices:
        raise invalid(name, f"{name} must be one of {', '.join(choices)}")
    return value


def text_field(body: dict, name: str, max_length: int) -> str | None:
    return checked_text(body.get(name), name, max_length)


def checked_text(value: object, name: str, max_length: int) -> str | None:
    """A printable string of at most `max_length` characters (PostgreSQL refuses NUL)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_length \
            or any(ord(c) < 32 for c in value):
        raise invalid(name, f"{name} must be a non-empty printable string of at most {max_length} characters")
    return value


def url_field(body: dict, name: str, settings: Settings) -> str | None:
    """A URL the bridge will send to: the outbound rules (bridge/outbound/policy.py)
    checked now, so a session is refused rather than its events dropped later."""
    value = text_field(body, name, 2000)
    problem = value and url_problem(value, settings.outbound_policy)
    if problem:
        raise invalid(name, f"{name} {problem}")
    return value


def window_field(body: dict, name: str) -> tuple[datetime | None, datetime | None]:
    """{"start": ISO 8601, "end": ISO 8601}, either optional; times need a UTC offset."""
    value = body.get(name)
    if value is None:
        return None, None
    if not isinstance(value, dict) or set(value) - {"start", "end"}:
        raise invalid(name, f"{name} must be an object with start and/or end")
    bounds = []
    for bound in ("start", "end"):
        raw = value.get(bound)
        if raw is None:
            bounds.append(None)
            continue
        try:
            moment = datetime.fromisoformat(raw) if isinstance(raw, str) else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise invalid(name, f"{name}.{bound} must be an ISO 8601 time with a UTC offset")
        bounds.append(moment)
    if bounds[0] and bounds[1] and bounds[1] <= bounds[0]:
        raise invalid(name, f"{name}.end must be after {name}.start")
    return bounds[0], bounds[1]


def time_field(body: dict, name: str) -> datetime | None:
    """An ISO 8601 time with a UTC offset, or None when absent."""
    raw = body.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise invalid(name, f"{name} must be an ISO 8601 time with a UTC offset")
    return moment


def uuid_field(body: dict, name: str) -> uuid.UUID | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise invalid(name, f"{name} must be a UUID")


def uuid_param(request: web.Request, name: str = "id") -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise ApiError(404, "not_found", "no such resource") from None


def uuid_query(request: web.Request, name: str) -> uuid.UUID | None:
    if name not in request.query:
        return None
    try:
        return uuid.UUID(request.query[name])
    except ValueError:
        raise invalid(name, f"{name} must be a UUID") from None


def time_query(request: web.Request, name: str) -> datetime | None:
    """An ISO 8601 time (UTC if it names no offset)."""
    if name not in request.query:
        return None
    try:
        value = datetime.fromisoformat(request.query[name])
        return value.replace(tzinfo=value.tzinfo or timezone.utc).astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise invalid(name, f"{name} must be a date-time such as 2025-01-31T08:00:00Z") from None


def limit_param(request: web.Request) -> int:
    raw = request.query.get("limit", "50")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 500:
        raise invalid("limit", "limit must be an integer between 1 and 500")
    return int(raw)


def refuse_unknown(body: dict, known: set[str]) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise invalid(unknown[0] or '""', f"unknown field {unknown[0]!r}")  # an empty name still names the field

