"""One masked call, top to bottom.

A caller dials a virtual number; Asterisk puts the leg into our Stasis app.
`masked_call` then: resolves the session, rings the caller (not answered, so
not billed while the counterpart rings), dials the counterpart showing only
the virtual number, bridges and records on answer, tears everything down when
either side hangs up, writes the call row as it goes, and moves the recording
into the project's store. Every unhappy outcome plays a prompt in early media
and releases the caller with a cause that says why. Nothing created here
outlives the call: the `finally` hangs up and destroys what is left.

How each step is done lives beside it (`pin.py`, `dial.py`, `recording.py`,
`legs.py`), shared with click-to-call (`connect.py`) and with calls adopted
after a restart (`adopt.py`), which resume this story at `talk_until_hangup`,
or where setup stood (`resume.py`).
"""
from __future__ import annotations

import json
import time
import uuid
from datetime import datetime

from bridge import metrics
from bridge.ari import AriClient, AriError, Event
from bridge.calls import ids, media
from bridge.calls.arrival import arrival
from bridge.calls.decisions import (
    CAUSE_NO_ANSWER, CAUSE_NORMAL, Ending, ended_by_asterisk, ending_for_dial, ending_for_rejection, hangup_side,
    recording_consent, sound_uris, time_limit_steps,
)
from bridge.calls.decisions import call_time_limit
from bridge.calls.deps import CallAborted, CallDeps, CallState
from bridge.calls.dial import dial_masked, wait_for_answer
from bridge.calls.events import CallEvents
from bridge.calls.legs import hangup_leg, release_everything, release_with_prompt
from bridge.calls.notice import NoticeHeard, play_notice
from bridge.calls.out_of_session import ASKABLE, ask_business
from bridge.calls.pin import route_by_pin
from bridge.calls.record import CallRow
from bridge.calls.recording import (
    begin_recording, bound_unseen_talk, recording_started, start_mixmonitor, starts_in_one_action, stop_recording,
    store_recording,
)
from bridge.clock import utcnow
from bridge.config import Settings
from bridge.logs import get_logger
from bridge.numbering import mask_number, to_e164
from bridge.privacy import purposes
from bridge.recordings import wait_audio
from bridge.sessions.resolve import AskPin, Connect, Reject, RejectReason, Route, resolve_route
from bridge.store import Store
from bridge.store.errors import StoreUnavailable

log = get_logger("bridge.calls")


async def masked_call(deps: CallDeps, start: Event) -> None:
    ari, settings = deps.ari, deps.settings
    caller = start.channel
    received = time.monotonic()
    call = CallState(id=uuid.uuid4(), caller_id=caller.id)
    deps.active[caller.id] = call
    arrived = arrival(start.args or (caller.exten,), caller.name, settings)
    virtual_number = arrived.virtual_number
    caller_number = to_e164(caller.caller_number, settings.default_region)
    clog = log.bind(call_id=str(call.id), virtual_number=arrived.row_number, trunk=arrived.trunk)
    clog.info("call.started", caller=mask_number(caller_number or caller.caller_number))
    events = CallEvents(deps.router)
    events.watch(caller.id)
    row = CallRow(deps.store, call.id, clog, spool=deps.spool)
    started_at = utcnow()
    session = webhook_url = None
    try:
        # 1. Who is calling whom?
        route = await resolve(deps.store, settings, virtual_number, caller_number, clog)
        session = route.session
        row.insert(virtual_number=arrived.row_number, caller_channel_id=caller.id, started_at=started_at,
                   asterisk_node=deps.node, reported=False,
                   session_id=session.id if session else None,
                   direction=route.direction if isinstance(route, Connect) else None,
                   time_limit_seconds=session.time_limit_seconds if isinstance(route, Connect) else None)
        if isinstance(route, AskPin):  # a shared number: the caller's PIN names the session
            route = await route_by_pin(deps, events, row, call, virtual_number, caller_number, clog)
            if route is None:
                return  # hung up during PIN entry
            session = route.session
            received = time.monotonic()  # setup time is ours: it starts when the PIN is in, not before
        clog = clog.bind(session_id=str(session.id) if session else None)
        clog.info("call.resolved", outcome="connect" if isinstance(route, Connect) else route.reason.value,
                  lookup_ms=_ms_since(received))
        webhook_url = (session.webhook_url or settings.webhook_url or None) if session else None
        if isinstance(route, Reject):
            ending = ending_for_rejection(route.reason, settings.prompts)
            await release_with_prompt(ari, events, call, ending)
            row.update(disposition="rejected", reject_reason=route.reason.value, ended_at=utcnow(),
                       caller_hangup_cause=events.gone.get(caller.id) or ending.cause, hangup_by="system")
            clog.info("call.rejected", reason=route.reason.value, cause=ending.cause)
            return

        if session.ttl_mode == "last_interaction":
            row.touch_session(session.id)

        # 2. A recorded call tells the caller so first (in early media, so not
        #    billed), with the chance to opt out; then ring the counterpart,
        #    showing only the virtual number, while the caller hears ringback
        #    (or the session's wait audio).
        heard: list[NoticeHeard] = []
        if session.record:
            await ari.progress(caller.id)
            await hear_notice(deps, events, call, row, heard, caller.id, "caller", (caller.id,))
            if events.is_gone(caller.id):
                row.update(disposition="cancelled", ended_at=utcnow(), hangup_by="caller",
                           caller_hangup_cause=events.gone[caller.id])
                clog.info("call.cancelled", during="notice")
                return
            await media.ringback(ari, call, caller.id, wait_sound(session))
        elif session.wait_audio_id:
            await ari.progress(caller.id)
            await media.ringback(ari, call, caller.id, wait_sound(session))
        else:
            await media.ring(ari, call, caller.id)
        call.callee_id = ids.callee_channel(call.id)
        await dial_masked(deps, events, call.callee_id, route.counterpart, route.caller_id,
                          app_args=f"callee,{call.id}", originator=caller.id)
        setup_ms = _ms_since(received)
        row.update(callee_channel_id=call.callee_id, setup_ms=setup_ms)
        metrics.call_setup_seconds.observe(setup_ms / 1000)
        clog.info("call.dialing", counterpart=mask_number(route.counterpart), setup_ms=setup_ms)

        # 3. Wait for the counterpart: answer, failure, or the caller giving up.
        def on_ringing() -> None:
            row.update(ringing_at=utcnow())
            row.event("call.ringing", session.id, webhook_url, call_event_data(call, row, session))
            clog.info("call.ringing")

        answer = await wait_for_answer(events, call, settings.dial_timeout, on_ringing)
        if events.is_gone(caller.id):
            await hangup_leg(ari, call, call.callee_id)
            row.update(disposition="cancelled", ended_at=utcnow(), hangup_by="caller",
                       caller_hangup_cause=events.gone[caller.id])
            clog.info("call.cancelled", ring_ms=_ms_since(received))
            return
        if answer is None or answer.dialstatus != "ANSWER":
            await end_unanswered(deps, events, call, answer, row, clog)
            return

        # 4. Answered. Unless the caller already opted out, the counterpart hears
        #    the notice too before the parties hear each other; then answer the
        #    caller, bridge the two legs, and record only if both heard it.
        if session.record and not any(h.opted_out for h in heard):
            await hear_notice(deps, events, call, row, heard, call.callee_id, "callee",
                              (caller.id, call.callee_id))
            if events.is_gone(caller.id) or events.is_gone(call.callee_id):
                await left_during_notice(ari, events, call, row, settings, clog)
                return
        record = consented(settings, session, heard, row, clog)
        await media.silence(ari, call, caller.id)
        await ari.answer(caller.id)
        answered_at = await bridge_and_record(deps, events, call, row, session, webhook_url, clog,
                                              record=record, since=received)

        # 5.-6. Talk until either side hangs up; tear down; store the recording.
        await talk_until_hangup(deps, call, events, row, answered_at, started_at, clog)
    except (AriError, CallAborted) as exc:
        # A leg vanished under us (AriNotFound) or Asterisk refused a step:
        # the `finally` below releases whatever is left.
        clog.warning("call.aborted", error=str(exc))
        row.update(disposition="cancelled" if events.is_gone(caller.id) else "failed",
                   ended_at=utcnow(), hangup_by="caller" if events.is_gone(caller.id) else "system")
    finally:
        await finish_call(deps, call, events, row, session, webhook_url)


async def resolve(store: Store, settings: Settings, virtual_number: str | None, caller_number: str | None,
                  clog) -> Route:
    """The route for a call, the same whichever path carries it (ARI or FastAGI).
    A dialed number that reads as no number is in no pool: not in service."""
    if virtual_number is None:
        return Reject(RejectReason.UNKNOWN_NUMBER)
    try:
        lookup = await store.sessions.route_lookup(virtual_number, caller_number)
        route = resolve_route(lookup, caller_number, utcnow())
    except StoreUnavailable:
        route = Reject(RejectReason.DATABASE_UNAVAILABLE)
    if isinstance(route, Reject) and route.reason in ASKABLE and settings.out_of_session_url:
        route = await ask_business(store, settings, virtual_number, caller_number, route)
        clog.info("call.out_of_session_asked", connect=isinstance(route, Connect))
    return route


async def hear_notice(deps: CallDeps, events: CallEvents, call: CallState, row: CallRow, heard: list[NoticeHeard],
                      channel_id: str, party: str, stop_if_gone: tuple[str, ...]) -> None:
    """Play the recording notice to one party and keep the evidence in the row."""
    heard.append(await play_notice(deps.ari, events, call, channel_id, party, deps.settings.notice, stop_if_gone))
    row.update(notices=json.dumps([h.to_json() for h in heard]))


def wait_sound(session) -> str | None:
    return wait_audio.sound_uri(session.wait_audio_id) if session.wait_audio_id else None


async def end_unanswered(deps: CallDeps, events: CallEvents, call: CallState, answer: Event | None, row: CallRow,
                         clog, early_media: bool = True) -> None:
    """The counterpart did not answer: the caller hears why and is released."""
    ari = deps.ari
    await hangup_leg(ari, call, call.callee_id)
    await events.settle_causes((call.callee_id,))
    dialstatus = answer.dialstatus if answer else "NOANSWER"
    ending = ending_for_dial(dialstatus, events.gone.get(call.callee_id), deps.settings.prompts)
    clog.info("call.not_connected", dialstatus=dialstatus, disposition=ending.disposition)
    # Before the prompt, so that a process adopting the call ends it the same way.
    row.update(dial_status=dialstatus, callee_hangup_cause=events.gone.get(call.callee_id))
    await release_with_prompt(ari, events, call, ending, early_media)
    row.update(disposition=ending.disposition, dial_status=dialstatus, ended_at=utcnow(),
               hangup_by="system", callee_hangup_cause=events.gone.get(call.callee_id),
               caller_hangup_cause=events.gone.get(call.caller_id) or ending.cause)


async def left_during_notice(ari: AriClient, events: CallEvents, call: CallState, row: CallRow,
                             settings: Settings, clog) -> None:
    """A party hung up while the counterpart heard the notice, before the bridge."""
    caller_left = events.is_gone(call.caller_id)
    if caller_left:
        await hangup_leg(ari, call, call.callee_id, CAUSE_NORMAL)
    else:
        await release_with_prompt(ari, events, call, Ending("failed", settings.prompts.unavailable,
                                                            CAUSE_NO_ANSWER))
    await events.settle_causes((call.caller_id, call.callee_id))
    row.update(disposition="cancelled" if caller_left else "failed", dial_status="ANSWER", ended_at=utcnow(),
               hangup_by="caller" if caller_left else "callee",
               caller_hangup_cause=events.gone.get(call.caller_id),
               callee_hangup_cause=events.gone.get(call.callee_id))
    clog.info("call.not_connected", during="notice", hangup_by="caller" if caller_left else "callee")


def consented(settings: Settings, session, heard: list[NoticeHeard], row: CallRow, clog) -> bool:
    """Whether to record, after the notices; an opt-out goes into the row, and
    so does the hash of the notice (its purpose's) when every party heard it out."""
    record, opted_out_by = recording_consent(session.record, heard)
    if heard and all(h.completed for h in heard):
        row.update(notice_sha256=purposes.notice_sha256(purposes.registry_for(settings), session.purpose))
    if opted_out_by:
        row.update(recording_opt_out=opted_out_by)
        clog.info("recording.opted_out", party=opted_out_by)
    return record


async def bridge_and_record(deps: CallDeps, events: CallEvents, call: CallState, row: CallRow, session,
                            webhook_url: str | None, clog, record: bool, since: float) -> datetime:
    """Both legs answered: bridge them, tell the business, record. Returns the answer time."""
    ari = deps.ari
    call.bridge_id = ids.bridge(call.id)
    await ari.create_bridge(call.bridge_id, name=f"masking-{call.id}")
    await ari.add_to_bridge(call.bridge_id, [call.caller_id, call.callee_id])
    answered_at = utcnow()
    clog.info("call.bridged", answer_ms=_ms_since(since))
    channels, started = session.recording_channels, {}
    try:
        if record and starts_in_one_action(deps, channels) and await start_mixmonitor(deps, call, channels, clog):
            # One AMI action, then one statement says both. A process adopting
            # the call if this one dies in between finds the bridge and
            # MixMonitor's file in Asterisk (adopt.py), as it did when the
            # answer's write had not landed yet.
            started = recording_started(channels)
    finally:  # whatever happened to the recording, the answer is told
        row.update(answered_at=answered_at, dial_status="ANSWER", **started)
        row.event("call.answered", session.id, webhook_url, call_event_data(call, row, session))
    if record and not started:  # snoops (no AMI, or it refused) take turns of their own: told after the answer
        if late := await begin_recording(deps, events, call, channels, clog, try_mixmonitor=False):
            row.update(**late)
    return answered_at


async def talk_until_hangup(deps: CallDeps, call: CallState, events: CallEvents, row: CallRow, answered_at,
                            started_at, clog, hangup_unseen: bool = False) -> None:
    """Steps 5 and 6 of a connected call, shared by calls adopted after a restart
    and by click-to-call. The call's time limit is in its row, bounded by MASKING_MAX_CALL_SECONDS.
    `hangup_unseen`: a party left while no process listened (adopt.py)."""
    ari = deps.ari
    limit = call_time_limit(row.fields.get("time_limit_seconds"), deps.settings.max_call_seconds)
    first_gone = await talk_within_limit(deps, call, events, answered_at, limit)
    await stop_recording(deps, call)
    for leg in (call.caller_id, call.callee_id):
        if leg != first_gone:
            await hangup_leg(ari, call, leg, CAUSE_NORMAL)
    await events.settle_causes((call.caller_id, call.callee_id))
    talk = (utcnow() - answered_at).total_seconds()
    if first_gone is None:
        row.update(disposition="time_limit", ended_at=utcnow(), talk_seconds=round(talk, 3), hangup_by="system",
                   caller_hangup_cause=events.gone.get(call.caller_id),
                   callee_hangup_cause=events.gone.get(call.callee_id))
        clog.info("call.time_limit_reached", talk_seconds=round(talk, 1))
    elif ended_by_asterisk(events.soft_hangups.get(first_gone), first_gone in events.vanished):
        row.update(disposition="interrupted", ended_at=utcnow(), talk_seconds=round(talk, 3), hangup_by="system")
        clog.warning("call.interrupted", answered=True)
    else:
        row.update(disposition="answered", ended_at=utcnow(), talk_seconds=round(talk, 3),
                   hangup_by=hangup_side(first_gone, call.caller_id),
                   caller_hangup_cause=events.gone.get(call.caller_id),
                   callee_hangup_cause=events.gone.get(call.callee_id))
        clog.info("call.ended", hangup_by=hangup_side(first_gone, call.caller_id), talk_seconds=round(talk, 1))
    if call.recording_name:
        recorded = await store_recording(deps, events, call, row, started_at, clog)
        if hangup_unseen:
            bound_unseen_talk(row, recorded, answered_at)


async def talk_within_limit(deps: CallDeps, call: CallState, events: CallEvents, answered_at: datetime,
                            limit_seconds: int | None) -> str | None:
    """The leg that hung up first, or None when the time limit ended the call
    (both parties heard the warning first)."""
    legs = (call.caller_id, call.callee_id)
    steps = time_limit_steps(limit_seconds, _seconds_since(answered_at))
    if not steps:
        return await events.wait_gone(legs, timeout=float("inf"))
    for step in steps:
        first_gone = await events.wait_gone(legs, timeout=max(0.0, step.at - _seconds_since(answered_at)))
        if first_gone is not None:
            return first_gone
        if step.action == "warn":
            for leg in legs:  # on each channel: an announcer in the bridge would make Asterisk mix in software
                try:
                    await deps.ari.play(leg, sound_uris(deps.settings.prompts.time_limit_warning), str(uuid.uuid4()))
                except AriError:
                    pass  # that leg just hung up: the next wait sees it
    return None


async def finish_call(deps: CallDeps, call: CallState, events: CallEvents, row: CallRow, session,
                      webhook_url: str | None) -> None:
    """Whatever happened: nothing left in Asterisk, the row and events written."""
    try:
        await release_everything(deps.ari, call, events)
        events.close()
        metrics.calls_total.labels(row.fields.get("disposition", "failed")).inc()
        # One statement: a row that says its end was told has told it (else the
        # next process does, unclosed.py). A session that could not be read
        # (an adopted call, the database away) is not told: left for the next.
        if session is not None:
            row.update(reported=True)
            row.event("call.completed", session.id, webhook_url, call_event_data(call, row, session),
                      event_id=ids.completed_event(call.id))
        elif not row.fields.get("session_id"):
            row.update(reported=True)  # no session: nobody to tell
        await row.close()
    finally:
        # Only now: until its row says how it ended, reconciliation must not
        # take the call for one a dead process left behind.
        deps.active.pop(call.caller_id, None)


def call_event_data(call: CallState, row: CallRow, session) -> dict:
    """A webhook's view of the call: ids, roles and times, never a phone number."""
    f = row.fields

    def iso(name):
        return f[name].isoformat() if f.get(name) else None

    direction = f.get("direction")
    return {
        "call_id": str(call.id), "session_id": str(session.id), "external_ref": session.external_ref,
        "purpose": session.purpose, "direction": direction,
        # Participants by role, as the session names them; never by number.
        "caller": direction[0] if direction else None, "callee": direction[-1] if direction else None,
        "disposition": f.get("disposition", "in_progress"),
        "started_at": iso("started_at"), "ringing_at": iso("ringing_at"), "answered_at": iso("answered_at"),
        "ended_at": iso("ended_at"), "setup_ms": f.get("setup_ms"),
        # A Decimal where the row was read back (a call closed after a restart).
        "talk_seconds": float(f["talk_seconds"]) if f.get("talk_seconds") is not None else None,
        "recording_id": str(call.recording_id) if call.recording_id else None,
        "recording_opt_out": f.get("recording_opt_out"),
        "kind": f.get("kind", "inbound"), "custom_field": f.get("custom_field"),
    }


def _ms_since(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def _seconds_since(moment: datetime) -> float:
    return (utcnow() - moment).total_seconds()
