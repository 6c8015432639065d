"""Recording a bridged call, and moving its audio into the project's store
when the call ends (also for calls adopted after a restart, or left behind by
a dead process: adopt.py). The call's row, written as it goes, is `record.py`'s."""
from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

from bridge import recordings
from bridge.ami import AmiError
from bridge.ari import AriClient, AriError, Event
from bridge.calls import ids
from bridge.calls.decisions import unseen_talk_seconds
from bridge.calls.deps import CallAborted, CallDeps, CallState
from bridge.calls.events import CallEvents
from bridge.calls.legs import hangup_leg, wait_in_stasis
from bridge.calls.record import CallRow
from bridge.clock import utcnow
from bridge.config import Settings
from bridge.logs import get_logger
from bridge.recordings import stereo

log = get_logger("bridge.calls")

RECORDING_SETTLE = 5.0  # seconds Asterisk may take to say a recording started, or finished
MIXMONITOR_SPOOL = "../recording/"
ASTERISK_TIME = "%Y-%m-%dT%H:%M:%S.%f%z"  # how ARI writes times (bridges' creationtime, events' timestamp)


async def begin_recording(deps: CallDeps, events: CallEvents, call: CallState, channels: int, clog,
                          try_mixmonitor: bool = True) -> dict:
    """Start recording a bridged call; a failure must not cost the parties their
    conversation. Returns the row's fields that say it started (none if not),
    for the caller to write with whatever else the step wrote.
    `try_mixmonitor=False`: the caller tried MixMonitor already, go straight to snoops."""
    try:
        await start_recording(deps, events, call, channels, clog, try_mixmonitor)
        return recording_started(channels)
    except (AriError, CallAborted) as exc:
        call.recording_name = None
        clog.error("recording.not_started", error=str(exc))
        return {}


def recording_started(channels: int) -> dict:
    """The row's fields for a recording that has just started."""
    return {"recorded": True, "recording_started_at": utcnow(), "recording_channels": channels}


def starts_in_one_action(deps: CallDeps, channels: int) -> bool:
    """Whether a recording starts with one AMI action (MixMonitor), not the
    snoops' turns of channel set-up and events."""
    return deps.ami is not None and deps.settings.recording_tap == "mixmonitor" and (
        channels == 2 or deps.settings.recording_format == "wav")


async def start_recording(deps: CallDeps, events: CallEvents, call: CallState, channels: int = 1,
                          clog=log, try_mixmonitor: bool = True) -> None:
    """Record the call with MixMonitor on the caller's channel where AMI is
    there to start it, else with snoops.

    Recording the bridge itself would force Asterisk to mix in software (ARI-
    NOTES.md: time-to-bridge p95 2.6 s at 100 concurrent calls); a snoop costs
    Asterisk a channel per recorded party (its CPU per call twice the plain
    dialplan's); MixMonitor costs what the operator's own dialplan recording
    costs (bench/RESULTS.md). It writes WAV only here: a WAV's header says when
    the file is complete, and nothing is collected before it is.
    """
    if try_mixmonitor and starts_in_one_action(deps, channels) and await start_mixmonitor(deps, call, channels,
                                                                                            clog):
        return
    await start_snoops(deps.ari, events, call, deps.settings, channels)


async def start_mixmonitor(deps: CallDeps, call: CallState, channels: int, clog) -> bool:
    """MixMonitor on the caller's channel, in one AMI action; False (logged)
    when AMI refused it or did not answer: the caller records with snoops."""
    call.use_recording(channels, tap="mixmonitor")
    try:
        await deps.ami.mixmonitor(call.caller_id, **mixmonitor_files(call))
        return True
    except AmiError as exc:
        clog.warning("recording.tap_fallback", tap="snoop", error=str(exc))
        return False


def mixmonitor_files(call: CallState) -> dict[str, str]:
    """MixMonitor's arguments for the call's recording: one mixed file, or for
    two channels what the caller says (read) and hears (write), which start
    together and so need no alignment. Its relative paths start in Asterisk's
    `monitor` folder; ARI's stored recordings are its sibling `recording`."""
    if call.callee_recording_name:
        return {"options": f"r({MIXMONITOR_SPOOL}{call.recording_name}.wav)"
                           f"t({MIXMONITOR_SPOOL}{call.callee_recording_name}.wav)"}
    return {"file": f"{MIXMONITOR_SPOOL}{call.recording_name}.wav"}


async def start_snoops(ari: AriClient, events: CallEvents, call: CallState, settings: Settings,
                       channels: int = 1) -> None:
    """Record a snoop on the caller's leg (both directions), or for a
    two-channel recording one snoop per leg, each hearing only its party."""
    call.use_recording(channels, tap="snoop")
    legs = [(call.caller_id, call.snoop_id, call.recording_name)]
    if channels == 2:
        legs.append((call.callee_id, call.callee_snoop_id, call.callee_recording_name))
    for leg, snoop_id, _ in legs:
        events.watch(snoop_id)
        await ari.snoop(leg, snoop_id, spy="both" if channels == 1 else "in", app_args=f"snoop,{call.id}")
    for _, snoop_id, _ in legs:
        await wait_in_stasis(events, snoop_id)
    for _, snoop_id, name in legs:
        await ari.record_channel(snoop_id, name, settings.recording_format if channels == 1 else "wav")
    if channels == 2:
        call.recording_delays = await recording_delays(events, call.recording_name, call.callee_recording_name)


async def recording_delays(events: CallEvents, left: str, right: str) -> tuple[int, int]:
    """Silence before each channel so they line up, from when Asterisk says each began."""
    began: dict[str, datetime] = {}

    def started(e: Event) -> bool:
        if e.type == "RecordingStarted" and e.recording_name in (left, right) and e.timestamp:
            began[e.recording_name] = datetime.strptime(e.timestamp, ASTERISK_TIME)
        return len(began) == 2

    await events.wait_for(started, RECORDING_SETTLE)
    return stereo.start_delays(began.get(left), began.get(right))


async def resume_recording(deps: CallDeps, events: CallEvents, call: CallState, row: CallRow, channels: int,
                           live_channels: set[str], clog) -> None:
    """Record an adopted call its parties agreed to have recorded, whose dead
    predecessor had bridged it but not yet (as far as its row says) recorded it.
    A MixMonitor it started goes on (it lives on the caller's channel); snoops
    it left are reused: each records unless its recording already runs."""
    if ids.snoop_channel(call.id) not in live_channels:
        if await recording_left(deps, call, row, clog):
            return
        if started := await begin_recording(deps, events, call, channels, clog):
            row.update(**started)
        clog.info("recording.resumed", snoop_left=False)
        return
    call.use_recording(channels)
    begun = {}
    try:
        for snoop_id, name in ((call.snoop_id, call.recording_name), (call.callee_snoop_id, call.callee_recording_name)):
            if snoop_id:
                events.watch(snoop_id)
                if not await deps.ari.recording_is_live(name):
                    await deps.ari.record_channel(snoop_id, name, deps.settings.recording_format if channels == 1
                                                  else "wav")
                    begun = {"recording_started_at": utcnow()}  # the file (over)written from now
        row.update(recorded=True, recording_channels=channels, **begun)
        clog.info("recording.resumed", snoop_left=True)
    except AriError as exc:
        call.recording_name = None
        clog.error("recording.not_started", error=str(exc))


async def recording_left(deps: CallDeps, call: CallState, row: CallRow, clog) -> bool:
    """Take on the recording a dead predecessor started (a MixMonitor lives on
    the caller's channel; a snoop's file outlives it) if Asterisk holds it:
    the row says so, and it is collected when the call ends."""
    channels = await recording_in_asterisk(deps.ari, call.id)
    if channels is None:
        return False
    call.use_recording(channels, tap="mixmonitor")
    row.update(recorded=True, recording_channels=channels)
    clog.info("recording.resumed", tap="mixmonitor")
    return True


async def recording_in_asterisk(ari: AriClient, call_id: uuid.UUID) -> int | None:
    """The channels of the call's recording Asterisk holds (1, or 2 for the
    parties apart), or None: read from its files, not the session, which a
    process adopting the call may not have been able to read."""
    if await ari.stored_recording_exists(ids.recording(call_id)):
        return 1
    if await ari.stored_recording_exists(ids.recording_part(call_id, "caller")):
        return 2
    return None


async def stop_recording(deps: CallDeps, call: CallState) -> None:
    """Close a MixMonitor's files before its channel is hung up: Asterisk has
    closed them when it answers, so they are collected at once."""
    if call.tap == "mixmonitor" and call.recording_name and deps.ami is not None:
        await deps.ami.stop_mixmonitor(call.caller_id)


async def store_recording(deps: CallDeps, events: CallEvents, call: CallState, row: CallRow, started_at,
                          clog) -> float | None:
    """Move the call's recording into the store; the seconds of audio it
    holds, or None where it could not be kept (0 where its format's length is
    not read: gsm, sln)."""
    two_channel = call.callee_recording_name is not None
    try:
        if call.tap == "mixmonitor":
            stored = await recordings.when_complete(lambda: collect_recording(
                deps, call.id, started_at, row, two_channel=two_channel), RECORDING_SETTLE)
        else:
            await snoops_finished(deps.ari, events, call)
            stored = await collect_recording(deps, call.id, started_at, row, two_channel=two_channel,
                                             delays=call.recording_delays)
    except recordings.NotKept:
        clog.error("recording.not_kept")  # Asterisk's copy stays: the sweep moves it once writes go through
        return None
    except (AriError, recordings.RecordingInvalid, OSError) as exc:
        clog.error("recording.lost", error=str(exc))
        return None
    call.recording_id = stored.id
    clog.info("recording.stored", bytes=stored.bytes, seconds=round(stored.duration_seconds, 1),
              channels=2 if two_channel else 1)
    return stored.duration_seconds


def bound_unseen_talk(row: CallRow, recorded: float | None, answered_at: datetime) -> None:
    """After a hangup no process saw: the row's talk (written with the call's
    end) ends where the recording `store_recording` kept does, if sooner."""
    talk = float(row.fields["talk_seconds"])
    if (bounded := unseen_talk_seconds(talk, recorded, answered_at, row.fields.get("recording_started_at"))) < talk:
        row.update(talk_seconds=bounded)


async def snoops_finished(ari: AriClient, events: CallEvents, call: CallState) -> None:
    """Hang up the call's snoops and wait until Asterisk says their recordings are over."""
    names = {n for n in (call.recording_name, call.callee_recording_name) if n}
    for snoop_id in (call.snoop_id, call.callee_snoop_id):
        await hangup_leg(ari, call, snoop_id)
    finished = names & events.recordings_ended  # ended while the call waited for something else

    def all_finished(e: Event) -> bool:
        if e.type in ("RecordingFinished", "RecordingFailed") and e.recording_name in names:
            finished.add(e.recording_name)
        return finished == names

    if finished != names:
        await events.wait_for(all_finished, RECORDING_SETTLE)


async def collect_recording(deps: CallDeps, call_id: uuid.UUID, started_at, row: CallRow, two_channel: bool,
                            delays: tuple[int, int] = (0, 0)) -> recordings.StoredRecording:
    """Move a call's recording (one file, or two merged into stereo) out of
    Asterisk into the store, its row safe before Asterisk's copy goes."""
    fmt = "wav" if two_channel else deps.settings.recording_format
    dest = recordings.storage_path(Path(deps.settings.recording_dir), call_id, started_at, fmt)
    if two_channel:
        names = (ids.recording_part(call_id, "caller"), ids.recording_part(call_id, "callee"))
        return await recordings.collect_stereo(deps.ari, names, dest, deps.store.keys, row.keep_recording, delays,
                                               shared=deps.settings.shared_recording_spool)
    return await recordings.collect(deps.ari, ids.recording(call_id), dest, fmt, deps.store.keys,
                                    row.keep_recording, shared=deps.settings.shared_recording_spool)
