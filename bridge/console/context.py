"""What console handlers read from a request: the parent app's store and
settings, who is signed in, and the form's fields.

The console is a sub-application of the API's app, so the store, the settings
and the service's readiness are the API's own (`request.config_dict`).
"""
from __future__ import annotations

import asyncio
import uuid

from aiohttp import web

from bridge.api.context import SETTINGS, STORE, client_address
from bridge.config import Settings
from bridge.console.access import Principal, require
from bridge.privacy.audit import Actor
from bridge.store import Store

PRINCIPAL = web.RequestKey("console_principal", Principal)
TOKEN = web.RequestKey("console_token", str)
STOPPING = web.AppKey("console_stopping", asyncio.Event)


class Refused(Exception):
    """A request the console answers with an error page: the status, and a
    message that says what to do (it never repeats a number)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def store(request: web.Request) -> Store:
    return request.config_dict[STORE]


def settings(request: web.Request) -> Settings:
    return request.config_dict[SETTINGS]


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def allow(request: web.Request, permission: str) -> Principal:
    """The signed-in principal, if it holds `permission` (the one check every handler makes)."""
    return require(request[PRINCIPAL], permission)


def actor(request: web.Request, reason: str | None = None) -> Actor:
    return request[PRINCIPAL].actor(client_address(request), reason)


async def form_text(request: web.Request, name: str, max_length: int, required: bool = False) -> str | None:
    value = (await request.post()).get(name)
    if not isinstance(value, str) or not value.strip():
        if required:
            raise Refused(422, f"the form needs its '{name}' field")
        return None
    value = value.strip()
    if len(value) > max_length:
        raise Refused(422, f"'{name}' is longer than {max_length} characters")
    return value


async def form_uuid(request: web.Request, name: str) -> uuid.UUID | None:
    raw = await form_text(request, name, 40)
    try:
        return None if raw is None else uuid.UUID(raw)
    except ValueError:
        raise Refused(422, f"'{name}' is not an id") from None


def path_uuid(request: web.Request, name: str = "id") -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise Refused(404, "no such item") from None
