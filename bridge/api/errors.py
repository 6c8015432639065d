"""API errors: a stable `code`, a message, the offending field; never a trace.

Store and validation errors map to HTTP answers in one table, so every handler
can simply raise.
"""
from __future__ import annotations

import json

from aiohttp import web

from bridge.ari import AriNotConnected
from bridge.logs import get_logger
from bridge.numbering import InvalidNumber
from bridge.recordings.convert import UnsupportedAudio
from bridge.recordings.wait_audio import SoundsDirUnknown
from bridge.store.errors import (
    IdempotencyConflict, NotFound, NumberAlreadyInPool, NumberInUse, NumberUnavailable, PoolExhausted,
    SessionNotActive, StoreUnavailable, UnknownWaitAudio,
)
from bridge.store.errors import LegalHoldActive, RotationInProgress, SessionAnonymised

log = get_logger("bridge.api")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.extra = status, code, message, field, extra
        self.headers = headers or {}

    def response(self) -> web.Response:
        body = {"error": {"code": self.code, "message": self.message, **({"field": self.field} if self.field else {}),
                          **self.extra}}
        return web.json_response(body, status=self.status, headers=self.headers)


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid_field", message, field)


def from_exception(exc: Exception) -> ApiError | None:
    """The API answer for an error raised below the API, or None if unexpected."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, PoolExhausted):
        return ApiError(409, "pool_exhausted", str(exc), free_numbers=exc.free_numbers,
                        total_numbers=exc.total_numbers)
    if isinstance(exc, NumberInUse):
        return ApiError(409, "number_in_use", str(exc), session_ids=exc.session_ids)
    if isinstance(exc, NumberUnavailable):
        return ApiError(422, "number_unavailable", str(exc), exc.field)
    if isinstance(exc, NumberAlreadyInPool):
        return ApiError(409, "number_exists", "that number is already in the pool", "number")
    if isinstance(exc, IdempotencyConflict):
        return ApiError(422, "idempotency_key_reused", str(exc), "Idempotency-Key")
    if isinstance(exc, UnknownWaitAudio):
        return ApiError(422, "invalid_field", str(exc), "wait_audio_id")
    if isinstance(exc, SoundsDirUnknown):
        return ApiError(503, "sounds_unavailable", str(exc))
    if isinstance(exc, UnsupportedAudio):
        return ApiError(422, "unsupported_audio", str(exc))
    if isinstance(exc, SessionAnonymised):
        return ApiError(409, "session_anonymised", str(exc))
    if isinstance(exc, RotationInProgress):
        return ApiError(409, "rotation_in_progress", str(exc))
    if isinstance(exc, LegalHoldActive):
        return ApiError(409, "legal_hold", str(exc))
    if isinstance(exc, SessionNotActive):
        return ApiError(409, "session_not_active", str(exc))
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, StoreUnavailable):
        return ApiError(503, "database_unavailable", "the database is unavailable; retry later")
    if isinstance(exc, AriNotConnected):
        return ApiError(503, "ari_unavailable", "the bridge is not connected to Asterisk; retry later")
    if isinstance(exc, InvalidNumber):
        return ApiError(422, "invalid_number", str(exc))
    return None


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
            return ApiError(exc.status, code, exc.reason).response()
        raise
    except Exception as exc:  # the one place that turns surprises into a clean 500
        error = from_exception(exc)
        if error is not None:
            return error.response()
        log.error("api.unhandled", error=type(exc).__name__, path=request.path)
        return ApiError(500, "internal_error", "internal error").response()


async def json_body(request: web.Request) -> dict:
    if not request.can_read_body:
        raise ApiError(400, "malformed_json", "a JSON object body is required")
    try:
        # Bytes, not text(): a bogus charset in Content-Type must not matter.
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "malformed_json", "the body must be a JSON object")
    return body
