"""Calls whose process died after their end was written but before their
last writes: the recording moved out of Asterisk and the business told how
the call ended (`call.completed`). The row says which is missing: `reported`
false (migration 0036), or recorded without a recording row.

A recording is deleted in Asterisk only once its row is safe
(`recordings.Keep`), so whatever such a call recorded is still there; its
`call.completed` takes the id its process would have used
(`ids.completed_event`), so the business never gets it twice. The service's
reconciliation and the recordings sweep call in (`close_left_call`).
"""
from __future__ import annotations

import asyncio
import uuid

from bridge import recordings
from bridge.ari import AriClient, AriError, AriNotFound
from bridge.calls import ids
from bridge.calls.deps import CallDeps, CallState
from bridge.calls.flow import call_event_data
from bridge.calls.record import CallRow
from bridge.calls.recording import collect_recording
from bridge.logs import get_logger
from bridge.store.errors import StoreError

log = get_logger("bridge.calls")

COLLECTABLE = ("answered", "interrupted", "time_limit")  # dispositions a recording may follow


async def close_left_call(deps: CallDeps, call_id: uuid.UUID) -> bool:
    """Move the call's recording and tell its end, as far as each is missing;
    True once both are done. What cannot be done now (Asterisk or the
    database away, the file still being written, writes of the call still
    in the spool) is left for the next pass: the row still says so.
    Registered as active meanwhile, so two callers never both take a call."""
    try:
        if deps.spool is not None and call_id in await asyncio.to_thread(deps.spool.call_ids):
            return False  # its last writes are on their way: the row is not the whole story
        record = await deps.store.calls.get(call_id)
    except StoreError:  # gone (purged), or the database is away
        return False
    call = CallState(id=call_id, caller_id=record["caller_channel_id"], recording_id=record["recording_id"])
    if call.caller_id in deps.active:
        return False
    deps.active[call.caller_id] = call
    clog = log.bind(call_id=str(call_id), session_id=str(record["session_id"]))
    row = CallRow(deps.store, call_id, clog, resumed_fields=record, spool=deps.spool)
    try:
        if record["recorded"] and not record["recording_id"] and record["disposition"] in COLLECTABLE:
            if not await _move_recording(deps, call, record, row, clog):
                return False
        elif record["recorded"] and record["recording_id"]:
            await delete_copies_left(deps.ari, call_id, clog)
        if not record["reported"]:
            try:
                session = await deps.store.sessions.get(record["session_id"]) if record["session_id"] else None
            except StoreError:
                return False
            webhook_url = (session.webhook_url or deps.settings.webhook_url or None) if session else None
            row.update(reported=True)
            if session is not None:
                row.event("call.completed", session.id, webhook_url, call_event_data(call, row, session),
                          event_id=ids.completed_event(call_id))
            clog.info("call.closed_after_restart", disposition=record["disposition"])
        return True
    finally:
        await row.close()
        deps.active.pop(call.caller_id, None)


async def _move_recording(deps: CallDeps, call: CallState, record: dict, row: CallRow, clog) -> bool:
    """False when it is worth trying again later; True once there is nothing
    more to do (moved, nothing left in Asterisk, or a file that cannot be read)."""
    try:
        stored = await collect_recording(deps, call.id, record["started_at"], row,
                                         two_channel=record["recording_channels"] == 2)
    except AriNotFound:
        clog.warning("recording.not_found")  # nothing was left
        return True
    except recordings.RecordingIncomplete:
        return False  # MixMonitor has not closed it yet
    except recordings.RecordingInvalid as exc:
        clog.error("recording.lost", error=str(exc))
        return True
    except (AriError, recordings.NotKept, OSError) as exc:
        clog.warning("recording.not_moved", error=type(exc).__name__)
        return False
    call.recording_id = await _tidy_sealings(deps, call.id, stored, clog)
    clog.info("recording.recovered", bytes=stored.bytes)
    return True


async def _tidy_sealings(deps: CallDeps, call_id: uuid.UUID, stored: recordings.StoredRecording,
                         clog) -> uuid.UUID:
    """The id of the recording the database names for the call, with the
    sealings no key opens removed: the others when it names ours (a killed
    process sealed before keeping), ours when it names another (a FastAGI
    `finish` or a replayed spool kept its own first: a second recording row
    of a call is dropped as a duplicate). Nothing is removed while the row
    is not readable (the database away, or ours still in the spool)."""
    try:
        named = (await deps.store.calls.get(call_id))["recording_id"]
    except StoreError:
        return stored.id
    if named == stored.id:
        removed = await asyncio.to_thread(recordings.remove_unkept, stored.path)
    elif named is not None:
        stored.path.unlink(missing_ok=True)
        removed = 1
    else:
        return stored.id
    if removed:
        clog.info("recording.unkept_removed", files=removed)
    return named


async def delete_copies_left(ari: AriClient, call_id: uuid.UUID, clog) -> None:
    """Asterisk's copies of a recording already kept: its process died
    between keeping it and deleting them (or its last statement reached the
    database after the process was gone)."""
    for name in (ids.recording(call_id), ids.recording_part(call_id, "caller"), ids.recording_part(call_id, "callee")):
        try:
            await ari.delete_stored_recording(name)
        except AriNotFound:
            pass  # not there: the usual case
        except AriError as exc:
            clog.warning("recording.copy_not_deleted", error=str(exc))  # the sweep deletes it later
            return
