"""The recording notice on the FastAGI fallback, as on the ARI path.

Played with AGI commands (STREAM FILE, interrupted only by the opt-out digit),
so the bridge itself knows whether each party heard it to the end, pressed the
digit, or did not hear it at all (a sound that fails to play answers -1):
- the caller hears it in early media from the `route` request, before the
  counterpart is dialed;
- the counterpart hears it on its own channel once it answers, before the
  bridge (Dial's U() calls `agi://.../notice` there, dialplan/extensions.conf),
  with the same opt-out, and only if the caller consented.
The recording (MixMonitor) starts on the counterpart's channel only after both
heard the notice out without opting out: a notice that did not play records nothing.
"""
from __future__ import annotations

import json
import uuid

from bridge.calls import ids
from bridge.calls.notice import NoticeHeard
from bridge.calls.record import CallRow
from bridge.calls.spool import Spool
from bridge.clock import utcnow
from bridge.config import Notice, Settings
from bridge.logs import get_logger
from bridge.privacy import purposes
from bridge.store import Store
from bridge.store.errors import NotFound, StoreUnavailable

log = get_logger("bridge.agi")


async def agi_notice(request, notice: Notice, party: str) -> NoticeHeard:
    """Play the notice's sounds in turn on the request's channel; what was heard."""
    started_at, completed, opted_out = utcnow(), True, False
    for sound in filter(None, notice.sound.split("&")):
        result = await request.send_command(f'STREAM FILE {sound} "{notice.opt_out_digit}"')
        code = result.get("result", ("", ""))[0]
        if "error" in result or not code.lstrip("-").isdigit() or int(code) < 0:
            completed = False  # the sound did not play (or the party left)
            break
        if int(code) > 0:  # only the opt-out digit interrupts the notice
            opted_out = chr(int(code)) == notice.opt_out_digit
            completed = False
            break
    return NoticeHeard(party, notice.id, notice.version, started_at, utcnow(), completed=completed,
                       opted_out=opted_out)


async def channel_gone(request) -> bool:
    result = await request.send_command("CHANNEL STATUS")
    return "error" in result


async def counterpart_notice(store: Store, settings: Settings, spool: Spool | None, request) -> None:
    """`agi://.../notice?key=...,<call id>`, on the counterpart's answered channel.
    Sets MASKING_RECORD (and MASKING_RECORDING) there for the dialplan."""
    record = False
    try:
        call_id = uuid.UUID(request.headers.get("agi_arg_1", ""))
        stored = await store.calls.get(call_id)
        session = await store.sessions.get(stored["session_id"])
    except (ValueError, NotFound, StoreUnavailable):
        stored = None
    if stored is not None and stored["path"] == "agi" and stored["recorded"] and session.record:
        clog = log.bind(call_id=str(call_id), path="agi")
        heard = await agi_notice(request, settings.notice, "callee")
        record = heard.completed
        notices = stored["notices"]
        notices = json.loads(notices) if isinstance(notices, str) else list(notices or [])
        fields = {"notices": json.dumps(notices + [heard.to_json()]), "recorded": record}
        if heard.opted_out:
            fields["recording_opt_out"] = "callee"
            clog.info("recording.opted_out", party="callee")
        if record:
            fields["notice_sha256"] = purposes.notice_sha256(purposes.registry_for(settings), session.purpose)
        row = CallRow(store, call_id, clog, spool=spool)
        row.update(**fields)
        await row.close()
        name = f"{ids.recording(call_id)}.{settings.recording_format}"
        await request.send_command(f'SET VARIABLE MASKING_RECORDING "{name}"')
    await request.send_command(f'SET VARIABLE MASKING_RECORD "{1 if record else 0}"')
