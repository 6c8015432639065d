"""Click-to-call, top to bottom.

The business asks (`POST /v1/sessions/{id}/calls`) and the service calls the
first participant, showing only the session's virtual number. When they
answer they hear "please hold while we try to connect you", then the session's
wait audio (if it has one) and ringback while the other participant is dialed,
again showing only the virtual number; when that one answers the two are
bridged and recorded, and the call goes on like an inbound one
(`talk_until_hangup`). If the first party does not answer, nobody else is
called; if the second does not, the first hears why and is released. The call
row and webhook events are the same as for an inbound call, with
`kind = 'connect'`: the first party is the row's caller.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace

from bridge import metrics
from bridge.ari import AriError
from bridge.calls import ids, media
from bridge.calls.decisions import ending_for_dial
from bridge.calls.deps import CallAborted, CallDeps, CallState
from bridge.calls.dial import dial_masked, wait_for_answer, wait_for_dial
from bridge.calls.events import CallEvents
from bridge.calls.flow import (
    bridge_and_record, call_event_data, consented, end_unanswered, finish_call, hear_notice, talk_until_hangup,
    wait_sound,
)
from bridge.calls.legs import hangup_leg, play_to_end
from bridge.calls.notice import NoticeHeard
from bridge.calls.record import CallRow
from bridge.clock import utcnow
from bridge.logs import get_logger
from bridge.privacy import purposes
from bridge.sessions.caller_id import number_of, other
from bridge.sessions.models import MaskingSession

log = get_logger("bridge.calls")


@dataclass(frozen=True)
class ConnectRequest:
    """A validated request to connect a session's two participants."""

    first: str  # 'a' or 'b': the participant called first
    first_ring_timeout_seconds: int  # how long the first party may ring
    second_ring_timeout_seconds: int  # how long the second may, once the first answered
    time_limit_seconds: int | None = None  # None: the session's
    record: bool | None = None  # None: the session's
    custom_field: str | None = None  # the business's, echoed in the call events


def connect_row(call_id: uuid.UUID, session: MaskingSession, request: ConnectRequest, node: str) -> dict:
    """The call's row as it is written before the call starts, so that the
    API's `Location` answers at once."""
    return {
        # As if the first party had dialed: the number that is theirs.
        "call_id": call_id, "virtual_number": number_of(session, request.first),
        "caller_channel_id": ids.caller_channel(call_id), "started_at": utcnow(), "session_id": session.id,
        "direction": "a_to_b" if request.first == "a" else "b_to_a", "kind": "connect",
        "custom_field": request.custom_field, "asterisk_node": node, "reported": False,
        "time_limit_seconds": request.time_limit_seconds or session.time_limit_seconds,
    }


async def connect_call(deps: CallDeps, session: MaskingSession, request: ConnectRequest, row_fields: dict) -> None:
    ari, settings = deps.ari, deps.settings
    call = CallState(id=row_fields["call_id"], caller_id=row_fields["caller_channel_id"])
    deps.active[call.caller_id] = call
    first, second = ((session.participant_a, session.participant_b) if request.first == "a"
                     else (session.participant_b, session.participant_a))
    started = time.monotonic()
    clog = log.bind(call_id=str(call.id), session_id=str(session.id), kind="connect")
    events = CallEvents(deps.router)
    row = CallRow(deps.store, call.id, clog, resumed_fields=row_fields, spool=deps.spool)
    webhook_url = session.webhook_url or settings.webhook_url or None
    try:
        if session.ttl_mode == "last_interaction":
            row.touch_session(session.id)

        # 1. Call the first party, showing only the virtual number (their own,
        #    under the per-participant caller ID policy).
        await dial_masked(deps, events, call.caller_id, first, number_of(session, request.first),
                          app_args=f"caller,{call.id}", originator=None)
        setup_ms = int((time.monotonic() - started) * 1000)
        row.update(setup_ms=setup_ms)
        metrics.call_setup_seconds.observe(setup_ms / 1000)
        clog.info("call.dialing", leg="first", first=request.first, setup_ms=setup_ms)
        answer = await wait_for_dial(events, call.caller_id, request.first_ring_timeout_seconds,
                                     on_ringing=lambda: clog.info("call.ringing", leg="first"))
        if answer is None or answer.dialstatus != "ANSWER":
            # Nobody else is called. The first party was never answered: no prompt.
            await hangup_leg(ari, call, call.caller_id)
            await events.settle_causes((call.caller_id,))
            dialstatus = answer.dialstatus if answer else "NOANSWER"
            ending = ending_for_dial(dialstatus, events.gone.get(call.caller_id), settings.prompts)
            row.update(disposition=ending.disposition, dial_status=dialstatus, ended_at=utcnow(), hangup_by="system",
                       caller_hangup_cause=events.gone.get(call.caller_id))
            clog.info("call.not_connected", leg="first", dialstatus=dialstatus, disposition=ending.disposition)
            return

        # 2. They answered: the recording notice if the call records (with the
        #    chance to opt out), "connecting you", then the session's wait audio
        #    and ringback (or ringback alone) while the other party is dialed.
        row.update(caller_answered_at=utcnow())
        records = await may_record(deps, session, request.record)
        heard: list[NoticeHeard] = []
        if records:
            await hear_notice(deps, events, call, row, heard, call.caller_id, "caller", (call.caller_id,))
            if events.is_gone(call.caller_id):
                raise CallAborted("the first party hung up during the notice")
        await play_to_end(ari, events, call, call.caller_id, settings.prompts.connecting)
        if events.is_gone(call.caller_id):
            raise CallAborted("the first party hung up during the prompt")
        if session.wait_audio_id:
            await media.ringback(ari, call, call.caller_id, wait_sound(session))
        else:
            await media.ring(ari, call, call.caller_id)
        call.callee_id = ids.callee_channel(call.id)
        await dial_masked(deps, events, call.callee_id, second, number_of(session, other(request.first)),
                          app_args=f"callee,{call.id}", originator=call.caller_id)
        row.update(callee_channel_id=call.callee_id)
        clog.info("call.dialing", leg="second")

        # 3. Wait for the second party: answer, failure, or the first giving up.
        def on_ringing() -> None:
            row.update(ringing_at=utcnow())
            row.event("call.ringing", session.id, webhook_url, call_event_data(call, row, session))
            clog.info("call.ringing", leg="second")

        answer = await wait_for_answer(events, call, request.second_ring_timeout_seconds, on_ringing)
        if events.is_gone(call.caller_id):
            await hangup_leg(ari, call, call.callee_id)
            row.update(disposition="cancelled", ended_at=utcnow(), hangup_by="caller",
                       caller_hangup_cause=events.gone[call.caller_id])
            clog.info("call.cancelled")
            return
        await media.silence(ari, call, call.caller_id)
        if answer is None or answer.dialstatus != "ANSWER":
            await end_unanswered(deps, events, call, answer, row, clog, early_media=False)
            return

        # 4. The second party hears the notice too (unless the first declined the
        #    recording); then bridge, record if both heard it, talk until either
        #    side hangs up or the time limit.
        if records and not any(h.opted_out for h in heard):
            await hear_notice(deps, events, call, row, heard, call.callee_id, "callee",
                              (call.caller_id, call.callee_id))
            if events.is_gone(call.caller_id) or events.is_gone(call.callee_id):
                raise CallAborted("a party hung up during the notice")
        record = consented(settings, replace(session, record=records), heard, row, clog)
        answered_at = await bridge_and_record(deps, events, call, row, session, webhook_url, clog,
                                              record=record, since=started)
        await talk_until_hangup(deps, call, events, row, answered_at, row_fields["started_at"], clog)
    except (AriError, CallAborted) as exc:
        # A leg vanished under us or Asterisk refused a step: the `finally` releases what is left.
        first_left = events.is_gone(call.caller_id) and "caller_answered_at" in row.fields
        clog.warning("call.aborted", error=str(exc))
        row.update(disposition="cancelled" if first_left else "failed", ended_at=utcnow(),
                   hangup_by="caller" if first_left else "system")
    finally:
        await finish_call(deps, call, events, row, session, webhook_url)


async def may_record(deps: CallDeps, session, asked: bool | None) -> bool:
    """The request's choice (else the session's), within what the session's
    purpose allows, and never once a participant withdrew consent."""
    wanted = session.record if asked is None else asked
    return (purposes.records(purposes.registry_for(deps.settings), session.purpose, wanted)
            and not await deps.store.consent.session_withdrawn(session.id))
