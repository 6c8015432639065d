"""A recording played in the browser: the reason is asked first, the read
audited, then the audio streams (byte ranges included, as the API serves it,
bridge/api/audio.py) for as long as that audit row's grant lasts.

The grant is the audit row itself: the audio route plays a recording only
for the sign-in whose `recording.audio` row (reason and all) names it, within
GRANT_MINUTES of it. A browser fetches audio in several range requests; they
are one listening, written once, and no audio goes out without its row.
"""
from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from bridge.api.audio import stream_sealed
from bridge.clock import utcnow
from bridge.console.context import Refused, actor, allow, form_text, path_uuid, principal, store
from bridge.console.render import redirect
from bridge.logs import get_logger
from bridge.privacy.audit import AuditEntry
from bridge.privacy.crypto import CryptoError
from bridge.recordings.reading import AudioUnavailable, open_audio
from bridge.recordings.sealed import SealedFileError

GRANT_MINUTES = 30
ACTION = "recording.audio"  # the API's action for the same read
log = get_logger("bridge.console")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/recordings/{id}/listen", listen)
    router.add_get("/recordings/{id}/audio", audio)


def grant_holds(request: web.Request, entry: AuditEntry, recording_id) -> bool:
    """Whether audit row `entry` lets this sign-in play `recording_id` now."""
    me = principal(request)
    return (entry.action == ACTION and entry.target_id == str(recording_id)
            and entry.actor == me.actor("").name and entry.details.get("signin") == me.signin_id
            and utcnow() - entry.at < timedelta(minutes=GRANT_MINUTES))


async def listen(request: web.Request) -> web.Response:
    """The reason given, the read audited, back to the session with the player."""
    allow(request, "recordings")
    recording_id = path_uuid(request)
    reason = await form_text(request, "reason", 200, required=True)
    s = store(request)
    row = await s.recordings.get(recording_id)
    await opened(s, row)  # refuse a shredded or missing recording before auditing a read that cannot happen
    entry = await s.audit.append_by(actor(request, reason), ACTION, "recording", str(recording_id),
                                    session_id=row["session_id"],
                                    details={"call_id": str(row["call_id"]), "purpose": row.get("purpose"),
                                             "via": "console", "signin": principal(request).signin_id})
    return redirect(f"/console/sessions/{row['session_id']}?listen={entry.seq}#call-{row['call_id']}")


async def opened(s, row: dict):
    withdrawn, hold_reason = await s.consent.recording_use(row["id"])
    if withdrawn and hold_reason is None:  # as the API: only a legal hold keeps it in use
        raise Refused(403, "a participant withdrew consent: this recording is not used")
    try:
        return await open_audio(s, row)
    except AudioUnavailable as exc:
        raise Refused(410, "the recording was shredded: its audio can no longer be decrypted"
                      if exc.reason == "shredded" else "the recording's audio is no longer stored") from None
    except CryptoError as exc:
        log.error("recording.unreadable", recording_id=str(row["id"]), error=type(exc).__name__)
        raise Refused(500, "the recording's audio cannot be decrypted") from None


async def audio(request: web.Request) -> web.StreamResponse:
    allow(request, "recordings")
    recording_id = path_uuid(request)
    raw = request.query.get("grant", "")
    entry = await store(request).audit.entry(int(raw)) if raw.isdigit() and len(raw) < 19 else None
    if entry is None or not grant_holds(request, entry, recording_id):
        raise Refused(403, "give a reason to play this recording first (from its session's page)")
    row = await store(request).recordings.get(recording_id)
    stored = await opened(store(request), row)
    headers = {"Content-Type": f"audio/{row['format']}",
               "Content-Disposition": f'inline; filename="{row["id"]}.{row["format"]}"'}
    if stored.dek is None:  # stored before sealing existed, and not sealed yet
        return web.FileResponse(stored.path, headers=headers)
    try:
        return await stream_sealed(request, stored.path, stored.dek, recording_id, headers)
    except SealedFileError as exc:
        log.error("recording.unreadable", recording_id=str(recording_id), error=type(exc).__name__)
        raise Refused(500, "the recording's audio cannot be decrypted") from None
