"""An inbound call a dead process left in setup, carried on by the next one.

While no process runs, Asterisk keeps both legs in our Stasis app: the caller
in early media (hearing the notice, ringback or the session's wait audio),
the counterpart's leg dialing, ringing, answered, or hearing its notice. So
`adopt.py` hands such a call here and it goes on where it stood, as the story
in `flow.py` goes (steps 2 to 6):

- **the counterpart was dialed** (its leg exists; the row may not say so yet):
  it keeps ringing, for what is left of the ring timeout counted from when it
  started to ring (or from the call's start), and is bridged and recorded when
  it answers, even when it answered while no process ran (its leg is `Up`);
  an unanswered, refused or cancelled dial ends as in the flow.
- **the caller was hearing the notice** (no counterpart leg yet): the notice
  is played again, from its start, then the counterpart is dialed. Played
  again because a notice cut by the crash is not evidence that it was heard
  (the row keeps only notices that ended), and an opt-out digit pressed while
  no process listened reached no one; a caller who heard it already (the row
  says so) is dialed at once. The part the dead process started still plays
  to its end first: notices are short and finite, and ARI gives no way to
  find a playback by channel.
- **the counterpart was hearing its notice**: likewise played again in full
  before the bridge, unless the row says it was heard.

The session and direction come from the call's row, not from a new lookup:
the call was admitted when it arrived. A call still in PIN entry, or with no
session in its row, cannot be carried on (`adopt.py` releases it as
`interrupted`). The caller's ringback is stopped by its id (`ids.ringback`),
so nothing the dead process started keeps playing into the bridge; whatever
ends the call, `adopt.py`'s `finish_call` releases what is left.
"""
from __future__ import annotations

import json
import time
from datetime import datetime

from bridge.ari import AriError, Event
from bridge.calls import ids, media
from bridge.calls.deps import CallAborted, CallDeps, CallState
from bridge.calls.dial import dial_masked, wait_for_answer
from bridge.calls.events import CallEvents
from bridge.calls.flow import (
    bridge_and_record, call_event_data, consented, end_unanswered, hear_notice, left_during_notice,
    talk_until_hangup, wait_sound,
)
from bridge.calls.legs import hangup_leg
from bridge.calls.notice import NoticeHeard
from bridge.calls.record import CallRow
from bridge.clock import utcnow
from bridge.sessions.caller_id import other, participant
from bridge.sessions.resolve import Connect


def resumable(record: dict, session) -> bool:
    """Whether a call found unanswered can be carried on: an inbound call
    whose row names its session and direction."""
    return (session is not None and record.get("direction") in ("a_to_b", "b_to_a")
            and record.get("kind", "inbound") == "inbound")


async def resume_setup(deps: CallDeps, events: CallEvents, call: CallState, row: CallRow, record: dict,
                       session, webhook_url: str | None, clog) -> None:
    """Carry on a call in setup from where its dead process left it."""
    ari, settings = deps.ari, deps.settings
    caller = call.caller_id
    received = time.monotonic()
    heard = notices_in(record)
    # What the dead process left playing or ringing on the caller: stopped before the bridge.
    call.playing.setdefault(caller, set()).add(ids.ringback(call.id))
    call.ringing.add(caller)
    clog.info("call.adopted", stage="ringing" if call.callee_id else "notice")
    try:
        # A party left while no process listened: the caller gave up, or the
        # counterpart's leg ended (busy, refused, or its ring timeout hung it up).
        if events.is_gone(caller):
            await hangup_leg(ari, call, call.callee_id)
            row.update(disposition="cancelled", ended_at=utcnow(), hangup_by="caller")
            clog.info("call.cancelled", resumed=True)
            return
        if call.callee_id and events.is_gone(call.callee_id):
            left = Event(type="Dial", dialstatus=record.get("dial_status") or "", peer_id=call.callee_id)
            events.gone[call.callee_id] = record.get("callee_hangup_cause")  # what the dead process saw, if it did
            await end_unanswered(deps, events, call, left, row, clog)
            return

        # 2. The caller's notice (again, if the crash cut it), then ring the counterpart.
        if call.callee_id is None:
            # The dead process may have started ringback already: a notice would queue behind it.
            await media.silence(ari, call, caller)
            if session.record and not any(h.party == "caller" for h in heard):
                await hear_notice(deps, events, call, row, heard, caller, "caller", (caller,))
                if events.is_gone(caller):
                    row.update(disposition="cancelled", ended_at=utcnow(), hangup_by="caller",
                               caller_hangup_cause=events.gone[caller])
                    clog.info("call.cancelled", during="notice")
                    return
            if session.record or session.wait_audio_id:
                await media.ringback(ari, call, caller, wait_sound(session))
            else:
                await media.ring(ari, call, caller)
            route = route_of(session, record["direction"])
            call.callee_id = ids.callee_channel(call.id)
            await dial_masked(deps, events, call.callee_id, route.counterpart, route.caller_id,
                              app_args=f"callee,{call.id}", originator=caller)
            row.update(callee_channel_id=call.callee_id)
            clog.info("call.dialing", resumed=True)

        # 3. The counterpart's answer: already given while no process ran, or awaited.
        if not await answered_already(deps, call):
            def on_ringing() -> None:
                row.update(ringing_at=utcnow())
                row.event("call.ringing", session.id, webhook_url, call_event_data(call, row, session))

            since = row.fields.get("ringing_at") or record["started_at"]
            left = max(1.0, settings.dial_timeout - (utcnow() - since).total_seconds())
            answer = await wait_for_answer(events, call, left, on_ringing)
            if events.is_gone(caller):
                await hangup_leg(ari, call, call.callee_id)
                row.update(disposition="cancelled", ended_at=utcnow(), hangup_by="caller",
                           caller_hangup_cause=events.gone[caller])
                clog.info("call.cancelled", resumed=True)
                return
            if answer is None or answer.dialstatus != "ANSWER":
                await end_unanswered(deps, events, call, answer, row, clog)
                return

        # 4. The counterpart's notice (unless heard or declined), then bridge and record.
        if session.record and not any(h.opted_out for h in heard) and not any(h.party == "callee" for h in heard):
            await hear_notice(deps, events, call, row, heard, call.callee_id, "callee", (caller, call.callee_id))
            if events.is_gone(caller) or events.is_gone(call.callee_id):
                await left_during_notice(ari, events, call, row, settings, clog)
                return
        record_call = consented(settings, session, heard, row, clog)
        await media.silence(ari, call, caller)
        await ari.answer(caller)
        answered_at = await bridge_and_record(deps, events, call, row, session, webhook_url, clog,
                                              record=record_call, since=received)

        # 5.-6. As any connected call.
        await talk_until_hangup(deps, call, events, row, answered_at, record["started_at"], clog)
    except (AriError, CallAborted) as exc:
        clog.warning("call.aborted", error=str(exc), resumed=True)
        row.update(disposition="cancelled" if events.is_gone(caller) else "failed",
                   ended_at=utcnow(), hangup_by="caller" if events.is_gone(caller) else "system")


async def answered_already(deps: CallDeps, call: CallState) -> bool:
    """The counterpart answered while no process listened: its Dial event
    reached no one, but its leg is up."""
    channel = await deps.ari.channel(call.callee_id)
    return channel is not None and channel.get("state") == "Up"


def route_of(session, direction: str) -> Connect:
    """The route the call was admitted on, from its row's direction."""
    caller_role = direction.split("_to_")[0]
    return Connect(session, participant(session, other(caller_role)), direction)


def notices_of(record: dict) -> list[dict]:
    """The notices the row says were heard, as stored (asyncpg hands jsonb over as text)."""
    notices = record.get("notices") or "[]"
    return json.loads(notices) if isinstance(notices, str) else notices


def notices_in(record: dict) -> list[NoticeHeard]:
    """The notices the row says were heard."""
    heard = []
    for n in notices_of(record):
        heard.append(NoticeHeard(
            party=n["party"], notice_id=n["notice_id"], version=n["version"],
            started_at=datetime.fromisoformat(n["started_at"]), ended_at=datetime.fromisoformat(n["ended_at"]),
            completed=n["completed"], opted_out=n["opted_out"]))
    return heard
