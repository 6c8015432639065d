"""Calls a previous process (or ARI connection) left in progress, taken over
after a restart: resumed from their row where both legs still talk or the
call is still in setup, released as `interrupted` where they cannot be. The
service's reconciliation calls in; calls that had ended are `unclosed.py`'s."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from bridge.ari import AriClient, AriError, AriNotFound
from bridge.calls import ids
from bridge.calls.decisions import CAUSE_TEMPORARY_FAILURE, consent_on_record
from bridge.calls.deps import CallAborted, CallDeps, CallState
from bridge.calls.events import CallEvents
from bridge.calls.flow import call_event_data, finish_call, talk_until_hangup
from bridge.calls.legs import release_everything
from bridge.calls.record import CallRow
from bridge.calls.recording import (
    ASTERISK_TIME, bound_unseen_talk, recording_in_asterisk, recording_left, resume_recording, store_recording,
)
from bridge.calls.resume import notices_of, resumable, resume_setup
from bridge.clock import utcnow
from bridge.logs import get_logger
from bridge.store.errors import StoreError

log = get_logger("bridge.calls")


async def adopt_call(deps: CallDeps, record: dict, live_channels: set[str]) -> None:
    """Take over a call a previous process (or connection) left in progress.

    Every id of a call derives from its call id, so its row is enough to find
    its legs, bridge and recording. A bridged call whose two legs are alive
    keeps talking and is finished as usual; a call still in setup (notice,
    ringing, the counterpart's notice) goes on where it stood (`resume.py`);
    anything else (a leg gone, PIN entry) is released as `interrupted`.
    """
    call = CallState(id=record["id"], caller_id=record["caller_channel_id"],
                     callee_id=record["callee_channel_id"])
    if not call.callee_id and ids.callee_channel(call.id) in live_channels:
        call.callee_id = ids.callee_channel(call.id)  # dialed just before the row could say so
    if call.callee_id:
        call.bridge_id = ids.bridge(call.id)
    if record["recorded"]:  # by a snoop while one is left, else (or finished) as MixMonitor's files are collected
        call.use_recording(record.get("recording_channels") or 1,
                           tap="snoop" if ids.snoop_channel(call.id) in live_channels else "mixmonitor")
    deps.active[call.caller_id] = call
    clog = log.bind(call_id=str(call.id), session_id=str(record["session_id"]))
    events = CallEvents(deps.router)
    for channel_id in (call.caller_id, call.callee_id, call.snoop_id, call.callee_snoop_id):
        if channel_id:
            events.watch(channel_id)
            if channel_id not in live_channels:
                events.note_gone(channel_id)  # left while no process listened
    row = CallRow(deps.store, call.id, clog, resumed_fields=record, spool=deps.spool)
    session = webhook_url = None
    withdrawn = False
    try:
        try:
            session = await deps.store.sessions.get(record["session_id"]) if record["session_id"] else None
            withdrawn = session is not None and await deps.store.consent.session_withdrawn(session.id)
            if withdrawn:
                session = replace(session, record=False)  # a participant withdrew consent meanwhile
            webhook_url = (session.webhook_url or deps.settings.webhook_url or None) if session else None
        except StoreError:
            pass
        answered_at = record["answered_at"]
        if answered_at is None and call.callee_id:
            # Its predecessor may have bridged the legs and died before the row
            # (and the `call.answered` in the same statement) said so.
            answered_at = await bridged_at(deps.ari, call, events)
            if answered_at:
                row.update(answered_at=answered_at, dial_status="ANSWER")
                if session is not None:
                    row.event("call.answered", session.id, webhook_url, call_event_data(call, row, session))
        legs_alive = call.callee_id and not events.is_gone(call.caller_id) and not events.is_gone(call.callee_id)
        one_leg_left = bool(call.callee_id) and events.is_gone(call.caller_id) != events.is_gone(call.callee_id)
        # Recorded as its parties agreed, though the row does not say so yet.
        unsaid = bool(answered_at) and not record["recorded"] and consent_on_record(notices_of(record))
        if answered_at and (legs_alive or one_leg_left):
            # Talking, or a party hung up while no process listened: ended as any call.
            clog.info("call.adopted")
            if unsaid and legs_alive and not withdrawn:
                await resume_recording(deps, events, call, row, session.recording_channels if session else 1,
                                       live_channels, clog)
            elif unsaid:  # what its predecessor recorded is kept; nothing new starts for one party alone
                await recording_left(deps, call, row, clog)
            await talk_until_hangup(deps, call, events, row, answered_at, record["started_at"], clog,
                                    hangup_unseen=one_leg_left)
        elif not answered_at and resumable(record, session) and (legs_alive or one_leg_left or not call.callee_id):
            await drop_unjoined_bridge(deps.ari, call)
            await resume_setup(deps, events, call, row, record, session, webhook_url, clog)
        else:
            clog.warning("call.interrupted", answered=bool(answered_at))
            if unsaid:  # said before the call's end, so that a crash here leaves it to adopt again
                await recording_left(deps, call, row, clog)
            ended = utcnow()
            fields = {"disposition": "interrupted", "ended_at": ended, "hangup_by": "system"}
            if answered_at:
                fields["talk_seconds"] = round((ended - answered_at).total_seconds(), 3)
            row.update(**fields)
            await release_everything(deps.ari, call, events, cause=CAUSE_TEMPORARY_FAILURE)
            if call.recording_name:
                recorded = await store_recording(deps, events, call, row, record["started_at"], clog)
                if answered_at:
                    bound_unseen_talk(row, recorded, answered_at)
    except (AriError, CallAborted) as exc:
        clog.warning("call.aborted", error=str(exc))
    finally:
        await finish_call(deps, call, events, row, session, webhook_url)


async def bridged_at(ari: AriClient, call: CallState, events: CallEvents) -> datetime | None:
    """When the call's bridge was made (Asterisk's clock), if its predecessor
    had put the legs in it: every leg still up is in the bridge (one request
    adds both); with none left, its recording exists, begun only after the
    bridge. A bridge made but not joined (the process died in between) is no
    answer: nobody talked. A leg found gone since the reconciliation's list
    of channels is noted gone in `events`."""
    bridge = await ari.bridge(ids.bridge(call.id))
    if not bridge:
        return None
    joined = set(bridge.get("channels", []))
    live = [leg for leg in (call.caller_id, call.callee_id) if not events.is_gone(leg)]
    for leg in [leg for leg in live if leg not in joined]:
        if await ari.channel_exists(leg):
            return None  # up and never joined
        events.note_gone(leg)
        live.remove(leg)
    if not live and await recording_in_asterisk(ari, call.id) is None:
        return None
    try:
        return datetime.strptime(bridge["creationtime"], ASTERISK_TIME)
    except (KeyError, ValueError):
        return utcnow()


async def drop_unjoined_bridge(ari: AriClient, call: CallState) -> None:
    """A bridge its predecessor made but did not join: gone before the call
    goes on, which makes it again (Asterisk refuses a second with its id)."""
    if call.bridge_id:
        try:
            await ari.destroy_bridge(call.bridge_id)
        except AriNotFound:
            pass
