"""Retention, legal hold and erasure on a real PostgreSQL (and, at the end, a
real recorded SIPp call): what purge removes, what a hold keeps, what erasure
leaves (a recording file nobody can decrypt, no number in any table)."""
from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

from bridge.privacy.audit import Actor
from bridge.privacy.retention import Kind, RetentionPolicy
from bridge.recordings.sealed import SealedFileCorrupt, read_range
from bridge.sessions.models import SessionRequest
from bridge.store import NotFound, SessionAnonymised, Store, utcnow
from tests.support.recordings import store_recording

OPERATOR = Actor("cli:test", "cli@test", "ticket 42")
NOTHING_KEPT = RetentionPolicy(recordings_days=0, call_details_days=0, sessions_days=0)
AUDIO = b"RIFF" + os.urandom(5000)
_serial = iter(range(100, 10000))


async def session_with_call(store: Store, tmp_path: Path, *, closed: bool = True, a: str | None = None,
                            record: bool = True, custom_field: str | None = "order 1234"):
    """A session (closed by default) with one answered call and, if `record`, its recording."""
    n = next(_serial)
    number = f"+65600{n:05d}"
    await store.add_number(number)
    session, _ = await store.create_session(SessionRequest(
        a or f"+65910{n:05d}", f"+65810{n:05d}", 600, True, "delivery_order", external_ref=f"order-{n}"))
    call_id = uuid.uuid4()
    await store.insert_call(call_id, number, f"chan-{call_id}", utcnow(), session_id=session.id,
                            disposition="answered", recorded=record, direction="a_to_b", talk_seconds=12.5,
                            custom_field=custom_field)
    recording_id = await store_recording(store, call_id, tmp_path / str(n), AUDIO) if record else None
    if closed:
        await store.close_session(session.id)
    return session, call_id, recording_id


async def rows(store: Store, sql: str, *args) -> list[dict]:
    async with store.pool.acquire() as conn:
        return [dict(r) for r in await conn.fetch(sql, *args)]


async def test_purge_anonymises_sessions_past_retention_and_a_second_purge_finds_nothing(store, tmp_path):
    session, call_id, recording_id = await session_with_call(store, tmp_path)
    live, _, live_recording = await session_with_call(store, tmp_path, closed=False)

    report = await store.purge(RetentionPolicy(recordings_days=None, call_details_days=None, sessions_days=0),
                               by=OPERATOR)
    again = await store.purge(RetentionPolicy(recordings_days=None, call_details_days=None, sessions_days=0),
                              by=OPERATOR)

    assert report.purged[Kind.SESSIONS] == 1 and report.purged[Kind.RECORDINGS] == 1
    assert report.purged[Kind.CALL_DETAILS] == 1
    assert again.total == 0
    [row] = await rows(store, "SELECT * FROM masking_sessions WHERE id = $1", session.id)
    assert row["anonymised_at"] is not None and row["status"] == "closed"
    assert [row[c] for c in ("participant_a_hash", "participant_b_hash", "participant_a_sealed",
                             "participant_b_sealed", "key_id", "external_ref")] == [None] * 6
    assert await rows(store, "SELECT 1 FROM session_participants WHERE session_id = $1", session.id) == []
    [call] = await rows(store, "SELECT * FROM calls WHERE id = $1", call_id)
    assert call["custom_field"] is None and call["direction"] is None and call["details_purged_at"] is not None
    assert (call["disposition"], float(call["talk_seconds"]), call["session_id"]) == ("answered", 12.5, session.id)
    assert await store.recording_key(recording_id) is None
    assert Path((await store.recording(recording_id))["storage_path"]).is_file()
    shown = await store.get_session(session.id)
    assert (shown.participant_a, shown.participant_b) == (None, None)
    assert shown.to_json(utcnow())["anonymised_at"] is not None
    # The live session is untouched.
    assert await store.recording_key(live_recording) is not None
    assert (await store.get_session(live.id)).participant_a is not None
    [audit] = await store.list_audit(action="purge.run")
    assert audit.details["sessions"]["purged"] == 1 and audit.actor == "cli:test"


async def test_each_kind_ages_on_its_own_period(store, tmp_path):
    session, call_id, recording_id = await session_with_call(store, tmp_path, closed=False)
    async with store.pool.acquire() as conn:
        await conn.execute("UPDATE recordings SET created_at = now() - interval '31 days' WHERE id = $1",
                           recording_id)
        await conn.execute("UPDATE calls SET started_at = now() - interval '20 days' WHERE id = $1", call_id)

    report = await store.purge(RetentionPolicy(recordings_days=30, call_details_days=21, sessions_days=0))

    assert (report.purged[Kind.RECORDINGS], report.purged[Kind.CALL_DETAILS], report.purged[Kind.SESSIONS]) \
        == (1, 0, 0)
    assert await store.recording_key(recording_id) is None
    assert (await store.call(call_id))["custom_field"] == "order 1234"

    report = await store.purge(RetentionPolicy(recordings_days=30, call_details_days=19, sessions_days=None))

    assert report.purged[Kind.CALL_DETAILS] == 1 and report.purged[Kind.RECORDINGS] == 0
    assert (await store.call(call_id))["custom_field"] is None
    assert (await store.get_session(session.id)).participant_a is not None  # the session itself is live


async def test_purge_works_in_bounded_batches(store, tmp_path):
    for _ in range(5):
        await session_with_call(store, tmp_path, record=False)

    report = await store.purge(NOTHING_KEPT, batch=2)

    assert report.batches[Kind.SESSIONS][:3] == [2, 2, 1] and report.purged[Kind.SESSIONS] == 5
    assert all(size <= 2 for sizes in report.batches.values() for size in sizes)
    assert (await store.purge(NOTHING_KEPT, batch=2)).total == 0


async def test_a_dry_run_counts_exactly_and_changes_nothing(store, tmp_path):
    _, _, recording_id = await session_with_call(store, tmp_path)
    await session_with_call(store, tmp_path, record=False)

    dry = await store.purge(NOTHING_KEPT, batch=1, dry_run=True)
    real = await store.purge(NOTHING_KEPT, batch=1)

    assert dry.purged == real.purged and dry.purged[Kind.SESSIONS] == 2 and dry.dry_run
    assert await store.list_audit(action="purge.run") == []  # nobody named: no row (and none for the dry run)


async def test_legal_hold_keeps_a_session_its_calls_and_recording_through_purge_and_erasure(store, tmp_path):
    session, call_id, recording_id = await session_with_call(store, tmp_path)

    held = await store.set_legal_hold(session.id, "litigation 2026-17, call +6591234567", OPERATOR)
    purged = await store.purge(NOTHING_KEPT)
    erased = await store.erase_subject(session.participant_a, OPERATOR)

    assert held.to_json(utcnow())["legal_hold"]["reason"] == "litigation 2026-17, call +65****4567"
    assert purged.held[Kind.SESSIONS] == 1 and purged.held[Kind.RECORDINGS] == 1
    assert purged.purged[Kind.SESSIONS] == 0 and purged.purged[Kind.RECORDINGS] == 0
    assert erased.sessions_erased == [] and erased.kept == [
        {"session_id": str(session.id), "reason": "legal_hold",
         "legal_hold_reason": "litigation 2026-17, call +65****4567"}]
    assert await store.recording_key(recording_id) is not None
    assert (await store.call(call_id))["custom_field"] == "order 1234"
    assert (await store.get_session(session.id)).participant_a == session.participant_a

    released = await store.release_legal_hold(session.id, OPERATOR)
    assert released.legal_hold_at is None
    assert (await store.purge(NOTHING_KEPT)).purged[Kind.SESSIONS] == 1
    assert await store.recording_key(recording_id) is None
    with pytest.raises(SessionAnonymised):
        await store.set_legal_hold(session.id, "too late", OPERATOR)
    with pytest.raises(NotFound):
        await store.set_legal_hold(uuid.uuid4(), "no such", OPERATOR)
    actions = [e.action for e in await store.list_audit(session_id=session.id)]
    assert actions[:2] == ["legal_hold.released", "legal_hold.set"]


async def test_a_hold_keeps_recordings_and_call_details_past_their_own_periods(store, tmp_path):
    session, call_id, recording_id = await session_with_call(store, tmp_path, closed=False)
    await store.set_legal_hold(session.id, "regulator's request", OPERATOR)

    report = await store.purge(NOTHING_KEPT)

    assert report.held[Kind.RECORDINGS] == 1 and report.held[Kind.CALL_DETAILS] == 1
    assert report.total == 0 and await store.recording_key(recording_id) is not None


async def test_erasure_anonymises_every_session_of_the_number_closing_live_ones_and_audits_without_it(
        store, tmp_path):
    subject = "+6597770001"
    ended, _, ended_recording = await session_with_call(store, tmp_path, a=subject)
    live, _, live_recording = await session_with_call(store, tmp_path, a=subject, closed=False)
    other, _, other_recording = await session_with_call(store, tmp_path)
    held, _, held_recording = await session_with_call(store, tmp_path, a=subject)
    await store.set_legal_hold(held.id, "case 9", OPERATOR)

    report = await store.erase_subject(subject, OPERATOR, batch=2)
    again = await store.erase_subject(subject, OPERATOR)

    assert sorted(report.sessions_erased) == sorted([ended.id, live.id])
    assert report.closed_first == [live.id] and report.recordings_shredded == 2 and report.calls_cleared == 2
    assert [k["session_id"] for k in report.kept] == [str(held.id)]
    assert again.sessions_erased == [] and len(again.kept) == 1
    assert (await store.get_session(live.id)).status == "closed"
    assert await store.recording_key(ended_recording) is None and await store.recording_key(live_recording) is None
    assert await store.recording_key(other_recording) is not None
    assert await store.recording_key(held_recording) is not None
    lookup = await store.route_lookup(live.virtual_number, subject)
    assert lookup.sessions == ()
    [second, entry] = await store.list_audit(action="subject.erased")  # newest first
    assert entry.subject_hash == store.keys.lookup_hash(subject) and entry.target_id == "+65****0001"
    assert subject not in str(entry) and subject[1:] not in str(entry)
    assert entry.details["sessions_erased"] == 2 and second.details["sessions_erased"] == 0
    assert entry.seq == report.audit_seq


async def test_erasure_keeps_a_session_whose_call_is_in_progress(store, tmp_path):
    subject = "+6597770002"
    session, call_id, _ = await session_with_call(store, tmp_path, a=subject, closed=False, record=False)
    await store.update_call(call_id, disposition="in_progress")

    report = await store.erase_subject(subject, OPERATOR)

    assert report.kept == [{"session_id": str(session.id), "reason": "call_in_progress", "legal_hold_reason": None}]
    assert (await store.get_session(session.id)).participant_a == subject
