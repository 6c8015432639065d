"""Wait audio over HTTP: what a caller hears instead of ringback while the counterpart rings, uploaded as a WAV.

Conversion and placement for Asterisk happen in bridge/recordings/wait_audio.py.
Each upload is its account's: another account's keys neither list, name nor delete it.
"""
from __future__ import annotations

from aiohttp import web

from bridge.api.context import SETTINGS, STORE, account_id, actor
from bridge.api.errors import ApiError
from bridge.api.fields import checked_text, uuid_param
from bridge.recordings import wait_audio

MAX_WAIT_AUDIO_BYTES = 8 * 1024 * 1024


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/wait-audio", add_wait_audio)
    router.add_get("/v1/wait-audio", list_wait_audio)
    router.add_delete("/v1/wait-audio/{id}", delete_wait_audio)


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
                                          actor(request), account_id(request))
    return web.json_response(wait_audio_json(row), status=201)


async def list_wait_audio(request: web.Request) -> web.Response:
    rows = await request.app[STORE].wait_audio.list(account_id(request))
    return web.json_response({"wait_audio": [wait_audio_json(r) for r in rows]})


async def delete_wait_audio(request: web.Request) -> web.Response:
    await wait_audio.delete_wait_audio(request.app[STORE], request.app[SETTINGS], uuid_param(request),
                                       actor(request), account_id(request))
    return web.Response(status=204)


def wait_audio_json(row: dict) -> dict:
    return {"id": str(row["id"]), "name": row["name"], "bytes": row["bytes"],
            "duration_seconds": float(row["duration_seconds"]), "sha256": row["sha256"],
            "created_at": row["created_at"].isoformat()}
