"""What every handler reads from its request: the app's keys, the API key behind it, its account, who and where it came from.

One place, so resource modules depend on it rather than on `app.py`, which imports them.
"""
from __future__ import annotations

import uuid

from aiohttp import web

from bridge.config import Settings
from bridge.privacy.audit import Actor, clean_reason
from bridge.store import Store

STORE = web.AppKey("store", Store)
SETTINGS = web.AppKey("settings", Settings)
READINESS = web.AppKey("readiness", object)
ACTIVE_CALLS = web.AppKey("active_calls", object)
PLACE_CALL = web.AppKey("place_call", object)
API_KEY = web.RequestKey("api_key", dict)


def actor(request: web.Request) -> Actor:
    """The API key behind `request`, for the audit rows it causes."""
    key = request[API_KEY]
    return Actor(f"apikey:{key['prefix']}:{key['name']}", client_address(request),
                 clean_reason(request.headers.get("X-Audit-Reason")))


def account_id(request: web.Request) -> uuid.UUID:
    """The tenant the request's API key belongs to: the only one whose sessions,
    calls, recordings, webhook events and wait audio it may see or change."""
    return request[API_KEY]["account_id"]


def account_name(request: web.Request) -> str:
    return request[API_KEY]["account"]


def client_address(request: web.Request) -> str:
    """The peer's address; behind a trusted proxy, the one it appended to X-Forwarded-For."""
    if request.app[SETTINGS].trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "").rsplit(",", 1)[-1].strip()
        if forwarded and forwarded.isprintable():
            return forwarded[:100]
    return request.remote or "unknown"
