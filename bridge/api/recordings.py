"""Recordings over HTTP: their metadata and their audio, each read written to the audit trail first.

Sealed audio is decrypted while it streams (audio.py); shredded audio answers 410.
A key reads only its account's recordings (another account's answer 404).
"""
from __future__ import annotations

from aiohttp import web

from bridge.api.audio import stream_sealed
from bridge.api.context import STORE, account_id, account_name, actor
from bridge.api.errors import ApiError
from bridge.api.fields import uuid_param
from bridge.logs import get_logger
from bridge.privacy.crypto import CryptoError
from bridge.recordings.reading import AudioUnavailable, open_audio
from bridge.recordings.sealed import SealedFileError

log = get_logger("bridge.api")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/recordings/{id}", get_recording)
    router.add_get("/v1/recordings/{id}/audio", get_recording_audio)


def recording_json(row: dict) -> dict:
    return {"id": str(row["id"]), "call_id": str(row["call_id"]), "session_id": str(row["session_id"]),
            "format": row["format"], "bytes": row["bytes"], "duration_seconds": float(row["duration_seconds"]),
            "sha256": row["sha256"], "created_at": row["created_at"].isoformat(), "sealed": row["sealed"],
            "shredded_at": row["shredded_at"].isoformat() if row["shredded_at"] else None}


async def audit_read(request: web.Request, action: str, recording: dict, **details) -> None:
    """Written before the answer: no recording is read without its audit row."""
    await request.app[STORE].audit.append_by(actor(request), action, "recording", str(recording["id"]),
                                      session_id=recording["session_id"],
                                      details={"call_id": str(recording["call_id"]),
                                               "purpose": recording.get("purpose"),
                                               "account": account_name(request), **details})


async def withdrawal_check(request: web.Request, recording_id) -> dict:
    """A participant who withdrew consent: their recordings are not used (403),
    unless a legal hold keeps them, and then the read's audit row says so."""
    withdrawn, hold_reason = await request.app[STORE].consent.recording_use(recording_id)
    if not withdrawn:
        return {}
    if hold_reason is None:
        raise ApiError(403, "recording_withdrawn", "a participant withdrew consent: this recording is not used"
                                                   " (readable only under a legal hold)")
    return {"consent_withdrawn": True, "legal_hold_reason": hold_reason}


async def get_recording(request: web.Request) -> web.Response:
    row = await request.app[STORE].recordings.get(uuid_param(request), account_id(request))
    await audit_read(request, "recording.read", row)
    return web.json_response(recording_json(row))


async def get_recording_audio(request: web.Request) -> web.StreamResponse:
    store, recording_id = request.app[STORE], uuid_param(request)
    row = await store.recordings.get(recording_id, account_id(request))
    under_hold = await withdrawal_check(request, recording_id)
    try:
        audio = await open_audio(store, row)
    except AudioUnavailable as exc:
        raise shredded() if exc.reason == "shredded" else \
            ApiError(410, "recording_gone", "the recording's audio is no longer stored") from None
    except CryptoError as exc:
        log.error("recording.unreadable", recording_id=str(recording_id), error=type(exc).__name__)
        raise ApiError(500, "internal_error", "the recording's audio cannot be decrypted") from None
    await audit_read(request, "recording.audio", row, **under_hold)
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
