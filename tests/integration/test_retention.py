"""Retention, legal hold and erasure on a real PostgreSQL (and, at the end, a
real recorded SIPp call): what purge removes, what a hold keeps, what erasure
leaves (a recording file nobody can decrypt, no number in any table)."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from pathlib import Path

import asyncpg
import pytest

from bridge.clock import utcnow
from bridge.privacy.audit import Actor
from bridge.privacy.retention import Kind, RetentionPolicy
from bridge.recordings.sealed import SealedFileCorrupt, read_range
from bridge.sessions.models import SessionRequest
from bridge.store import Store
from bridge.store.errors import NotFound, SessionAnonymised
from tests.integration.test_api import api  # noqa: F401 (fixture)
from tests.support.recordings import store_recording

OPERATOR = Actor("cli:test", "cli@test", "ticket 42")
NOTHING_KEPT = RetentionPolicy(recordings_days=0, call_details_days=0, sessions_days=0)
AUDIO = b"RIFF" + os.urandom(5000)
_serial = iter(range(100, 10000))


async def session_with_call(store: Store, tmp_path: Path, *, closed: bool = True, a: str | None = None,
                            record: bool = True, custom_field: str | None = "order 1234",
                            purpose: str = "delivery_order"):
    """A session (closed by default) with one answered call and, if `record`, its recording."""
    n = next(_serial)
    number = f"+65600{n:05d}"
    await store.numbers.add(number)
    session, _ = await store.sessions.create(SessionRequest(
        a or f"+65910{n:05d}", f"+65810{n:05d}", 600, True, purpose, external_ref=f"order-{n}"))
    call_id = uuid.uuid4()
    await store.calls.insert(call_id, number, f"chan-{call_id}", utcnow(), session_id=session.id,
                            disposition="answered", recorded=record, direction="a_to_b", talk_seconds=12.5,
                            custom_field=custom_field)
    recording_id = await store_recording(store, call_id, tmp_path / str(n), AUDIO) if record else None
    if closed:
        await store.sessions.close(session.id)
    return session, call_id, recording_id


async def rows(store: Store, sql: str, *args) -> list[dict]:
    async with store.pool.acquire() as conn:
        return [dict(r) for r in await conn.fetch(sql, *args)]


async def test_purge_anonymises_sessions_past_retention_and_a_second_purge_finds_nothing(store, tmp_path):
    session, call_id, recording_id = await session_with_call(store, tmp_path)
    live, _, live_recording = await session_with_call(store, tmp_path, closed=False)

    report = await store.retention.purge(RetentionPolicy(recordings_days=None, call_details_days=None, sessions_days=0),
                               by=OPERATOR)
    again = await store.retention.purge(RetentionPolicy(recordings_days=None, call_details_days=None, sessions_days=0),
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
    assert await store.recordings.key(recording_id) is None
    assert Path((await store.recordings.get(recording_id))["storage_path"]).is_file()
    shown = await store.sessions.get(session.id)
    assert (shown.participant_a, shown.participant_b) == (None, None)
    assert shown.to_json(utcnow())["anonymised_at"] is not None
    # The live session is untouched.
    assert await store.recordings.key(live_recording) is not None
    assert (await store.sessions.get(live.id)).participant_a is not None
    [audit] = await store.audit.list(action="purge.run")
    assert audit.details["sessions"]["purged"] == 1 and audit.actor == "cli:test"


async def test_each_kind_ages_on_its_own_period(store, tmp_path):
    session, call_id, recording_id = await session_with_call(store, tmp_path, closed=False)
    async with store.pool.acquire() as conn:
        await conn.execute("UPDATE recordings SET created_at = now() - interval '31 days' WHERE id = $1",
                           recording_id)
        await conn.execute("UPDATE calls SET started_at = now() - interval '20 days' WHERE id = $1", call_id)

    report = await store.retention.purge(RetentionPolicy(recordings_days=30, call_details_days=21, sessions_days=0))

    assert (report.purged[Kind.RECORDINGS], report.purged[Kind.CALL_DETAILS], report.purged[Kind.SESSIONS]) \
        == (1, 0, 0)
    assert await store.recordings.key(recording_id) is None
    assert (await store.calls.get(call_id))["custom_field"] == "order 1234"

    report = await store.retention.purge(RetentionPolicy(recordings_days=30, call_details_days=19, sessions_days=None))

    assert report.purged[Kind.CALL_DETAILS] == 1 and report.purged[Kind.RECORDINGS] == 0
    assert (await store.calls.get(call_id))["custom_field"] is None
    assert (await store.sessions.get(session.id)).participant_a is not None  # the session itself is live


async def test_purge_works_in_bounded_batches(store, tmp_path):
    for _ in range(5):
        await session_with_call(store, tmp_path, record=False)

    report = await store.retention.purge(NOTHING_KEPT, batch=2)

    assert report.batches[Kind.SESSIONS][:3] == [2, 2, 1] and report.purged[Kind.SESSIONS] == 5
    assert all(size <= 2 for sizes in report.batches.values() for size in sizes)
    assert (await store.retention.purge(NOTHING_KEPT, batch=2)).total == 0


async def test_a_dry_run_counts_exactly_and_changes_nothing(store, tmp_path):
    _, _, recording_id = await session_with_call(store, tmp_path)
    await session_with_call(store, tmp_path, record=False)

    dry = await store.retention.purge(NOTHING_KEPT, batch=1, dry_run=True)
    real = await store.retention.purge(NOTHING_KEPT, batch=1)

    assert dry.purged == real.purged and dry.purged[Kind.SESSIONS] == 2 and dry.dry_run
    assert await store.audit.list(action="purge.run") == []  # nobody named: no row (and none for the dry run)


async def test_legal_hold_keeps_a_session_its_calls_and_recording_through_purge_and_erasure(store, tmp_path):
    session, call_id, recording_id = await session_with_call(store, tmp_path)

    held = await store.holds.set(session.id, "litigation 2026-17, call +6591234567", OPERATOR)
    purged = await store.retention.purge(NOTHING_KEPT)
    erased = await store.erasure.erase(session.participant_a, OPERATOR)

    assert held.to_json(utcnow())["legal_hold"]["reason"] == "litigation 2026-17, call +65****4567"
    assert purged.held[Kind.SESSIONS] == 1 and purged.held[Kind.RECORDINGS] == 1
    assert purged.purged[Kind.SESSIONS] == 0 and purged.purged[Kind.RECORDINGS] == 0
    assert erased.sessions_erased == [] and erased.kept == [
        {"session_id": str(session.id), "reason": "legal_hold",
         "legal_hold_reason": "litigation 2026-17, call +65****4567"}]
    assert await store.recordings.key(recording_id) is not None
    assert (await store.calls.get(call_id))["custom_field"] == "order 1234"
    assert (await store.sessions.get(session.id)).participant_a == session.participant_a

    released = await store.holds.release(session.id, OPERATOR)
    assert released.legal_hold_at is None
    assert (await store.retention.purge(NOTHING_KEPT)).purged[Kind.SESSIONS] == 1
    assert await store.recordings.key(recording_id) is None
    with pytest.raises(SessionAnonymised):
        await store.holds.set(session.id, "too late", OPERATOR)
    with pytest.raises(NotFound):
        await store.holds.set(uuid.uuid4(), "no such", OPERATOR)
    actions = [e.action for e in await store.audit.list(session_id=session.id)]
    assert actions[:2] == ["legal_hold.released", "legal_hold.set"]


async def test_a_hold_keeps_recordings_and_call_details_past_their_own_periods(store, tmp_path):
    session, call_id, recording_id = await session_with_call(store, tmp_path, closed=False)
    await store.holds.set(session.id, "regulator's request", OPERATOR)

    report = await store.retention.purge(NOTHING_KEPT)

    assert report.held[Kind.RECORDINGS] == 1 and report.held[Kind.CALL_DETAILS] == 1
    assert report.held_sessions == {session.id}
    assert report.total == 0 and await store.recordings.key(recording_id) is not None


async def test_erasure_anonymises_every_session_of_the_number_closing_live_ones_and_audits_without_it(
        store, tmp_path):
    subject = "+6597770001"
    ended, _, ended_recording = await session_with_call(store, tmp_path, a=subject)
    live, _, live_recording = await session_with_call(store, tmp_path, a=subject, closed=False)
    other, _, other_recording = await session_with_call(store, tmp_path)
    held, _, held_recording = await session_with_call(store, tmp_path, a=subject)
    await store.holds.set(held.id, "case 9", OPERATOR)

    report = await store.erasure.erase(subject, OPERATOR, batch=2)
    again = await store.erasure.erase(subject, OPERATOR)

    assert sorted(report.sessions_erased) == sorted([ended.id, live.id])
    assert report.closed_first == [live.id] and report.recordings_shredded == 2 and report.calls_cleared == 2
    assert [k["session_id"] for k in report.kept] == [str(held.id)]
    assert again.sessions_erased == [] and len(again.kept) == 1
    assert (await store.sessions.get(live.id)).status == "closed"
    assert await store.recordings.key(ended_recording) is None and await store.recordings.key(live_recording) is None
    assert await store.recordings.key(other_recording) is not None
    assert await store.recordings.key(held_recording) is not None
    lookup = await store.sessions.route_lookup(live.virtual_number, subject)
    assert lookup.sessions == ()
    [second, entry] = await store.audit.list(action="subject.erased")  # newest first
    assert entry.subject_hash == store.keys.lookup_hash(subject) and entry.target_id == "+65****0001"
    assert subject not in str(entry) and subject[1:] not in str(entry)
    assert entry.details["sessions_erased"] == 2 and second.details["sessions_erased"] == 0
    assert entry.seq == report.audit_seq


async def test_erasure_keeps_a_session_whose_call_is_in_progress(store, tmp_path):
    subject = "+6597770002"
    session, call_id, _ = await session_with_call(store, tmp_path, a=subject, closed=False, record=False)
    await store.calls.update(call_id, disposition="in_progress")

    report = await store.erasure.erase(subject, OPERATOR)

    assert report.kept == [{"session_id": str(session.id), "reason": "call_in_progress", "legal_hold_reason": None}]
    assert (await store.sessions.get(session.id)).participant_a == subject


# -- the API -----------------------------------------------------------------------------
async def test_the_api_holds_releases_and_erases_with_the_subjects_scope_only(api, store, tmp_path):
    subject = "+6597770003"
    session, _, recording_id = await session_with_call(store, tmp_path, a=subject)
    plain_key = api.session.headers["Authorization"]  # sessions, numbers, recordings, audit: no subjects

    refused = [await api.post(f"/v1/sessions/{session.id}/legal-hold", json={"reason": "x"}),
               await api.post("/v1/subjects/erase", json={"number": subject})]
    token, _ = await store.api_keys.create("dpo", ["subjects"])
    api.session.headers["Authorization"] = f"Bearer {token}"
    held = await api.post(f"/v1/sessions/{session.id}/legal-hold", json={"reason": "case 7"},
                          headers={"X-Audit-Reason": "court order"})
    kept = await api.post("/v1/subjects/erase", json={"number": subject})
    no_reason = await api.post(f"/v1/sessions/{session.id}/legal-hold", json={})
    bad_number = await api.post("/v1/subjects/erase", json={"number": "+65123"})
    unknown = await api.post(f"/v1/sessions/{uuid.uuid4()}/legal-hold", json={"reason": "x"})
    released = await api.delete(f"/v1/sessions/{session.id}/legal-hold")
    erased = await api.post("/v1/subjects/erase", json={"number": "9777 0003"})  # national form
    too_late = await api.post(f"/v1/sessions/{session.id}/legal-hold", json={"reason": "late"})
    api.session.headers["Authorization"] = plain_key
    shown = await (await api.get(f"/v1/sessions/{session.id}")).json()
    audio = await api.get(f"/v1/recordings/{recording_id}/audio")

    assert [r.status for r in refused] == [403, 403]
    assert held.status == 200 and (await held.json())["legal_hold"]["reason"] == "case 7"
    assert (await kept.json())["kept"][0]["reason"] == "legal_hold"
    assert (no_reason.status, (await no_reason.json())["error"]["field"]) == (422, "reason")
    assert (bad_number.status, (await bad_number.json())["error"]["code"]) == (422, "invalid_number")
    assert "+65123" not in await bad_number.text()
    assert unknown.status == 404
    assert released.status == 200 and (await released.json())["legal_hold"] is None
    body = await erased.json()
    assert erased.status == 200 and body["sessions_erased"] == 1 and body["recordings_shredded"] == 1
    assert body["subject"] == "+65****0003" and subject[1:] not in await erased.text()
    assert (too_late.status, (await too_late.json())["error"]["code"]) == (409, "session_anonymised")
    assert shown["participant_a"] is None and shown["anonymised_at"] is not None and shown["legal_hold"] is None
    assert audio.status == 410 and (await audio.json())["error"]["code"] == "recording_shredded"
    [hold_row] = await store.audit.list(action="legal_hold.set")
    assert (hold_row.reason, hold_row.details, hold_row.session_id) == \
        ("court order", {"hold_reason": "case 7"}, session.id)


# -- real calls ----------------------------------------------------------------------------------
def test_erasing_after_a_real_recorded_call_leaves_a_file_nobody_can_decrypt_and_no_number(stack, place_call):
    from tests.integration.conftest import new_parties, query, wait_for_call_row
    from tests.integration.test_privacy import leaks, pg_dump

    parties = new_parties(stack)
    call = place_call(parties.a, parties.virtual_number, uas="uas_answer.xml", talk_ms=2000)
    assert call.counterpart.succeeded, call.counterpart.output
    row = wait_for_call_row(stack, parties.virtual_number, with_recording=True)
    recording = row["recording"]
    path = Path(recording["storage_path"])
    assert decrypt_with(stack, recording["id"], path)[:4] == b"RIFF"  # readable before

    status, body = api_call(stack, "POST", "/v1/subjects/erase", {"number": parties.b}, scopes=["subjects"])
    audio_status, audio = api_call(stack, "GET", f"/v1/recordings/{recording['id']}/audio", scopes=["recordings"])

    assert status == 200 and body["sessions_erased"] == 1 and body["recordings_shredded"] == 1
    assert body["closed_first"] == [str(row["session_id"])]  # it was live: closed, then erased
    assert path.is_file() and path.stat().st_size > 0
    assert query(stack.dsn, "SELECT * FROM recording_keys WHERE recording_id = $1", recording["id"]) == []
    for master_key in stack.keys.keys.values():  # nothing left that opens it
        with pytest.raises(SealedFileCorrupt):
            next(read_range(path, master_key, recording["id"], 0, 1))
    assert audio_status == 410 and audio["error"]["code"] == "recording_shredded"
    [call_row] = query(stack.dsn, "SELECT * FROM calls WHERE id = $1", row["id"])
    assert call_row["disposition"] == "answered" and call_row["talk_seconds"] > 0  # accounting stays
    dump = pg_dump(stack.dsn)
    assert parties.virtual_number in dump  # the dump is real
    assert leaks(dump, [parties.a, parties.b]) == []
    # The caller dials again: the session is gone for them.
    again = place_call(parties.a, parties.virtual_number, uac="uac_rejected.xml",
                       uac_values={"final_status": 403, "tag": "erased"})
    assert again.caller.succeeded, again.caller.output


def test_a_held_session_keeps_its_real_recording_through_purge_and_erasure_until_released(stack, place_call):
    from tests.integration.conftest import new_parties, query, wait_for_call_row
    from tests.integration.test_cli import masking

    parties = new_parties(stack)
    call = place_call(parties.a, parties.virtual_number, uas="uas_answer.xml", talk_ms=2000)
    assert call.counterpart.succeeded, call.counterpart.output
    row = wait_for_call_row(stack, parties.virtual_number, with_recording=True)
    session_id, recording = str(row["session_id"]), row["recording"]
    assert masking(stack, "sessions", "close", session_id).returncode == 0
    # Past every period (30 days; its purpose's recordings, 90) by back-dating this session only: the
    # shared database's other rows stay young.
    query(stack.dsn, "UPDATE masking_sessions SET closed_at = now() - interval '100 days', created_at = now()"
          " - interval '101 days', expires_at = now() - interval '99 days' WHERE id = $1", row["session_id"])
    query(stack.dsn, "UPDATE calls SET started_at = now() - interval '100 days' WHERE id = $1", row["id"])
    query(stack.dsn, "UPDATE recordings SET created_at = now() - interval '100 days' WHERE id = $1",
          recording["id"])
    periods = {f"MASKING_RETAIN_{k}_DAYS": "30" for k in ("RECORDINGS", "CALL_DETAILS", "SESSIONS")}

    held = masking(stack, "sessions", "hold", session_id, "--reason", "dispute 88", "--json")
    dry = masking(stack, "purge", "--dry-run", "--json", **periods)
    purge = masking(stack, "purge", "--json", **periods)
    erase = masking(stack, "subject", "erase", parties.a, "--json", "--reason", "request 5")
    status, _ = api_call(stack, "GET", f"/v1/recordings/{recording['id']}/audio", scopes=["recordings"])

    assert held.returncode == 0, held.stderr
    assert json.loads(held.stdout)["legal_hold"]["reason"] == "dispute 88"
    for result in (dry, purge):
        assert result.returncode == 0, result.stderr
        kinds = json.loads(result.stdout)["kinds"]
        assert kinds["sessions"]["held"] >= 1 and kinds["recordings"]["held"] >= 1
        assert session_id in json.loads(result.stdout)["held_sessions"]
    assert json.loads(erase.stdout)["kept"] == [
        {"session_id": session_id, "reason": "legal_hold", "legal_hold_reason": "dispute 88"}]
    assert status == 200 and decrypt_with(stack, recording["id"], Path(recording["storage_path"]))[:4] == b"RIFF"

    released = masking(stack, "sessions", "release-hold", session_id, "--reason", "settled")
    after = masking(stack, "purge", **periods)
    second = masking(stack, "purge", "--json", **periods)

    assert released.returncode == 0, released.stderr
    assert after.returncode == 0 and "sessions: purged 1," in after.stdout, after.stdout
    assert "recordings: purged 1," in after.stdout  # shredded with its session
    assert all(k["purged"] == 0 for k in json.loads(second.stdout)["kinds"].values())
    [session_row] = query(stack.dsn, "SELECT * FROM masking_sessions WHERE id = $1", row["session_id"])
    assert session_row["participant_a_sealed"] is None and session_row["anonymised_at"] is not None
    assert query(stack.dsn, "SELECT * FROM recording_keys WHERE recording_id = $1", recording["id"]) == []
    actions = [r["action"] for r in query(stack.dsn, "SELECT action FROM audit_log WHERE session_id = $1"
                                          " ORDER BY seq", row["session_id"])]
    assert [a for a in actions if a.startswith("legal_hold.")] == ["legal_hold.set", "legal_hold.released"]
    assert "recording.audio" in actions  # the held recording was read, and that read is on the record
    [run] = query(stack.dsn, "SELECT * FROM audit_log WHERE action = 'purge.run' ORDER BY seq DESC LIMIT 1")
    assert run["actor"].startswith("cli:")


def decrypt_with(stack, recording_id: uuid.UUID, path: Path) -> bytes:
    from bridge.privacy.crypto import recording_key_context
    from bridge.recordings.sealed import plaintext_size
    from tests.integration.conftest import query

    [key] = query(stack.dsn, "SELECT key_id, wrapped_key FROM recording_keys WHERE recording_id = $1",
                  recording_id)
    dek = stack.keys.open(key["key_id"], key["wrapped_key"], recording_key_context(recording_id))
    return b"".join(read_range(path, dek, recording_id, 0, plaintext_size(path)))


def api_call(stack, method: str, path: str, body: dict | None = None, scopes=("sessions",)) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    async def token():
        store = await Store.connect(stack.dsn, stack.keys)
        try:
            return (await store.api_keys.create("retention-test", list(scopes)))[0]
        finally:
            await store.close()

    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.settings.http_port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {asyncio.run(token())}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            data = resp.read()
            return resp.status, json.loads(data) if resp.headers.get("Content-Type", "").startswith(
                "application/json") else {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_a_recording_collected_after_its_session_was_erased_is_born_shredded(store, tmp_path):
    subject = "+6597770004"
    session, call_id, _ = await session_with_call(store, tmp_path, a=subject, record=False)
    await store.erasure.erase(subject, OPERATOR)

    recording_id = await store_recording(store, call_id, tmp_path, AUDIO)  # the late collection

    assert await store.recordings.key(recording_id) is None
    assert (await store.recordings.get(recording_id))["shredded_at"] is not None


async def test_the_service_purges_on_its_interval_audits_and_counts(store, tmp_path):
    from prometheus_client import REGISTRY

    from bridge.config import Settings
    from bridge.housekeeping import purge_periodically

    session, _, recording_id = await session_with_call(store, tmp_path)
    async with store.pool.acquire() as conn:  # past its purpose's own 30 days (the shipped registry)
        await conn.execute("UPDATE masking_sessions SET created_at = now() - interval '32 days', closed_at = now()"
                           " - interval '31 days' WHERE id = $1", session.id)
    settings = Settings(retain_recordings_days="never", retain_call_details_days="never", retain_sessions_days="0",
                        purge_interval_seconds=0.05, purge_batch=10)
    def purged() -> float:  # as /metrics renders it
        return REGISTRY.get_sample_value("masking_retention_purged_total", {"kind": "sessions"}) or 0.0

    before = purged()

    task = asyncio.create_task(purge_periodically(store, settings))
    try:
        for _ in range(100):
            if await store.audit.list(action="purge.run"):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # further runs find nothing and write nothing
    finally:
        task.cancel()

    [run] = await store.audit.list(action="purge.run")
    assert run.actor == "service" and run.details["sessions"]["purged"] == 1
    assert purged() == before + 1
    assert await store.recordings.key(recording_id) is None


async def test_with_the_database_down_purge_and_erasure_say_so():
    from bridge.store.errors import StoreUnavailable
    from tests.support.keys import shared_keys
    from tests.support.ports import free_port

    down = await Store.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing", shared_keys(), timeout=1)
    try:
        with pytest.raises(StoreUnavailable):
            await down.retention.purge(NOTHING_KEPT)
        with pytest.raises(StoreUnavailable):
            await down.erasure.erase("+6597770005", OPERATOR)
    finally:
        await down.close()


def test_the_cli_refuses_bad_input_with_exit_code_2_and_never_echoes_a_number(stack):
    from tests.integration.test_cli import masking

    malformed = masking(stack, "subject", "erase", "+65123")
    no_reason = masking(stack, "sessions", "hold", str(uuid.uuid4()), "--reason", " ")
    unknown = masking(stack, "sessions", "hold", str(uuid.uuid4()), "--reason", "case 3")
    bad_batch = masking(stack, "purge", "--batch", "0")

    assert malformed.returncode == 2 and "+65123" not in malformed.stderr + malformed.stdout
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    assert unknown.returncode == 1 and "no such session" in unknown.stderr
    assert bad_batch.returncode == 2


async def test_erasure_answers_an_open_erasure_request_and_refuses_any_other(store, tmp_path):
    from datetime import timedelta

    from bridge.privacy.subject_access import RequestMismatch, RequestNotOpen

    subject = "+6597770006"
    await session_with_call(store, tmp_path, a=subject)
    now = utcnow()
    erasure = await store.subjects.open_request("erasure", subject, now, now + timedelta(days=30), OPERATOR)
    access = await store.subjects.open_request("access", subject, now, now + timedelta(days=30), OPERATOR)
    other = await store.subjects.open_request("erasure", "+6597770007", now, now + timedelta(days=30), OPERATOR)

    with pytest.raises(RequestMismatch):
        await store.erasure.erase(subject, OPERATOR, request_id=access.id)
    with pytest.raises(RequestMismatch):
        await store.erasure.erase(subject, OPERATOR, request_id=other.id)
    assert await store.audit.list(action="subject.erased") == []  # refused before anything was erased
    await store.subjects.complete_request(access.id, OPERATOR)  # open, it would preserve the data (issue 14)
    report = await store.erasure.erase(subject, OPERATOR, request_id=erasure.id)
    with pytest.raises(RequestNotOpen):
        await store.erasure.erase(subject, OPERATOR, request_id=erasure.id)

    assert len(report.sessions_erased) == 1 and report.to_json()["request_id"] == str(erasure.id)
    done, _ = await store.subjects.request(erasure.id)
    assert done.status == "done"
    [closed] = await store.audit.list(action="subject.request.closed", target_id=str(erasure.id))
    assert closed.details["sessions_erased"] == 1 and closed.seq == report.audit_seq + 1


# -- failures and races (fixed after review) ------------------------------------------------
@contextlib.asynccontextmanager
async def failing_anonymisation(store: Store, session_id: uuid.UUID):
    """A blip (reported as a deadlock) whenever `session_id` is anonymised."""
    async with store.pool.acquire() as conn:
        await conn.execute("CREATE OR REPLACE FUNCTION test_blip() RETURNS trigger LANGUAGE plpgsql AS"
                           " $$ BEGIN RAISE EXCEPTION 'blip' USING ERRCODE = '40P01'; END $$")
        await conn.execute(f"CREATE TRIGGER test_blip BEFORE UPDATE ON masking_sessions FOR EACH ROW WHEN"
                           f" (NEW.id = '{session_id}' AND NEW.anonymised_at IS NOT NULL) EXECUTE FUNCTION test_blip()")
    try:
        yield
    finally:
        async with store.pool.acquire() as conn:
            await conn.execute("DROP TRIGGER IF EXISTS test_blip ON masking_sessions")


async def waiting_for_locks(store: Store, count: int, unless: asyncio.Task | None = None) -> None:
    """Until `count` backends of this database wait on a lock (the race is set
    up), or `unless` finished without waiting."""
    for _ in range(400):
        if unless is not None and unless.done():
            return
        waiting = (await rows(store, "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
                                     " AND wait_event_type = 'Lock'"))[0]["n"]
        if waiting >= count:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{count} backend(s) never waited on a lock")


async def anonymised(store: Store) -> set[uuid.UUID]:
    return {r["id"] for r in await rows(store, "SELECT id FROM masking_sessions WHERE anonymised_at IS NOT NULL")}


async def test_an_erasure_failing_in_a_later_batch_has_audited_every_session_it_erased(store, tmp_path):
    subject = "+6597770011"
    ids = sorted([(await session_with_call(store, tmp_path, a=subject, record=False))[0].id for _ in range(3)])

    async with failing_anonymisation(store, ids[2]):
        with pytest.raises(asyncpg.DeadlockDetectedError):
            await store.erasure.erase(subject, OPERATOR, batch=1)
    trail = await store.audit.list(subject_hash=store.keys.lookup_hash(subject))
    retry = await store.erasure.erase(subject, OPERATOR, batch=1)

    assert await anonymised(store) == set(ids)
    assert sorted(s for e in trail for s in e.details.get("session_ids", [])) == [str(i) for i in ids[:2]]
    assert {e.action for e in trail} == {"subject.erasure.batch"}
    assert retry.sessions_erased == [ids[2]]  # the retry no longer finds the others: the trail names them


async def test_a_purge_failing_in_a_later_batch_has_audited_every_batch_it_committed(store, tmp_path):
    ids = sorted([(await session_with_call(store, tmp_path, record=False))[0].id for _ in range(3)])

    async with failing_anonymisation(store, ids[2]):
        with pytest.raises(asyncpg.DeadlockDetectedError):
            await store.retention.purge(NOTHING_KEPT, batch=1, by=OPERATOR)
    batches = await store.audit.list(action="purge.batch")

    assert await anonymised(store) == set(ids[:2])
    assert sorted(i for b in batches for i in b.details["ids"]) == [str(i) for i in ids[:2]]
    assert {(b.details["kind"], b.details["purged"], b.actor) for b in batches} == {("sessions", 1, "cli:test")}
    assert await store.audit.list(action="purge.run") == []  # the run never finished


async def test_closing_an_erasure_request_while_its_erasure_runs_never_deadlocks(store, tmp_path):
    from datetime import timedelta

    from bridge.privacy.subject_access import RequestNotOpen
    from bridge.store.audit import AUDIT_LOCK

    subject = "+6597770012"
    await session_with_call(store, tmp_path, a=subject, record=False)
    now = utcnow()
    request = await store.subjects.open_request("erasure", subject, now, now + timedelta(days=30), OPERATOR)

    async with store.pool.acquire() as gate:  # holds the audit trail's lock: both writers queue behind it
        hold = gate.transaction()
        await hold.start()
        await gate.execute("SELECT pg_advisory_xact_lock($1)", AUDIT_LOCK)
        erase = asyncio.create_task(store.erasure.erase(subject, OPERATOR, request_id=request.id))
        await waiting_for_locks(store, 1)
        close = asyncio.create_task(store.subjects.complete_request(request.id, OPERATOR, "refused"))
        await waiting_for_locks(store, 2)
        await hold.rollback()
    results = await asyncio.gather(erase, close, return_exceptions=True)

    assert not [r for r in results if isinstance(r, asyncpg.DeadlockDetectedError)], results
    assert isinstance(results[1], RequestNotOpen), results  # the erasure had it locked, and answered it
    done, request_hash = await store.subjects.request(request.id)
    assert done.status == "done" and await store.audit.list(action="subject.erased") != []
    # Kept on purpose, as the audit trail keeps it (docs/privacy.md, "What erasure keeps").
    assert (request_hash, done.subject_hint) == (store.keys.lookup_hash(subject), "+65****0012")


async def test_purge_and_erasure_expire_sessions_past_their_time_with_the_default_webhook_url(store, tmp_path):
    url = "http://hooks.invalid/default"
    subject = "+6597770013"
    await session_with_call(store, tmp_path, a=subject, record=False)
    due = [(await session_with_call(store, tmp_path, closed=False, record=False))[0].id for _ in range(2)]
    async with store.pool.acquire() as conn:  # past its time, not yet expired (creating a session would)
        await conn.execute("UPDATE masking_sessions SET expires_at = now() - interval '1 minute',"
                           " created_at = now() - interval '1 hour' WHERE id = $1", due[0])

    await store.erasure.erase(subject, OPERATOR, webhook_url=url)
    async with store.pool.acquire() as conn:
        await conn.execute("UPDATE masking_sessions SET expires_at = now() - interval '1 minute',"
                           " created_at = now() - interval '1 hour' WHERE id = $1", due[1])
    await store.retention.purge(RetentionPolicy(recordings_days=None, call_details_days=None, sessions_days=None),
                      webhook_url=url)

    events = await rows(store, "SELECT session_id, url FROM webhook_outbox WHERE event_type = 'session.expired'")
    assert sorted((e["session_id"], e["url"]) for e in events) == sorted((s, url) for s in due)


async def test_a_hold_committing_while_a_purge_runs_keeps_its_recording_and_call_details(store, tmp_path):
    session, call_id, recording_id = await session_with_call(store, tmp_path)
    no_sessions = RetentionPolicy(recordings_days=0, call_details_days=0, sessions_days=None)

    async with store.pool.acquire() as other:
        hold = other.transaction()
        await hold.start()  # set_legal_hold's UPDATE, committed only once the purge is done
        await other.execute("UPDATE masking_sessions SET legal_hold_at = now(), legal_hold_reason = 'case 12',"
                            " legal_hold_by = 'test' WHERE id = $1", session.id)
        during = await asyncio.wait_for(store.retention.purge(no_sessions), 30)
        await hold.commit()
    after = await store.retention.purge(no_sessions)

    assert during.total == 0 and await store.recordings.key(recording_id) is not None
    assert (await store.calls.get(call_id))["custom_field"] == "order 1234"
    assert after.total == 0 and after.held[Kind.RECORDINGS] == 1 and after.held_sessions == {session.id}


async def test_purge_keeps_a_session_whose_call_is_in_progress_as_erasure_does(store, tmp_path):
    session, call_id, _ = await session_with_call(store, tmp_path, record=False)
    await store.calls.update(call_id, disposition="in_progress")

    during = await store.retention.purge(NOTHING_KEPT)
    kept = await store.sessions.get(session.id)
    await store.calls.update(call_id, disposition="answered")
    after = await store.retention.purge(NOTHING_KEPT)

    assert during.purged[Kind.SESSIONS] == 0 and kept.participant_a is not None
    assert after.purged[Kind.SESSIONS] == 1


async def test_a_recording_stored_while_its_session_is_being_erased_is_born_shredded(store, tmp_path):
    session, call_id, _ = await session_with_call(store, tmp_path, record=False)

    async with store.pool.acquire() as conn:
        erasing = conn.transaction()
        await erasing.start()  # an erasure's batch, committed once the recording is on its way in
        await conn.execute("SELECT 1 FROM masking_sessions WHERE id = $1 FOR UPDATE", session.id)
        await store.retention.anonymise_session(conn, session.id)
        stored = asyncio.create_task(store_recording(store, call_id, tmp_path, AUDIO))
        await waiting_for_locks(store, 1, unless=stored)
        await erasing.commit()
    recording_id = await stored

    assert await store.recordings.key(recording_id) is None
    assert (await store.recordings.get(recording_id))["shredded_at"] is not None


async def test_shredding_a_plaintext_recording_removes_its_file_at_once(store, tmp_path):
    from bridge.recordings.backfill import plaintext_retirer, seal_stored_recordings

    subject = "+6597770015"
    recordings = []
    for closed, a in ((True, subject), (True, None), (False, None)):  # erased, purged with its session, on its own
        _, call_id, _ = await session_with_call(store, tmp_path, closed=closed, a=a, record=False)
        recordings.append(await store_recording(store, call_id, tmp_path / "plain", AUDIO, sealed=False))
    plain = [Path((await store.recordings.get(r))["storage_path"]) for r in recordings]
    assert all(p.read_bytes() == AUDIO for p in plain)

    retire = plaintext_retirer(store)  # as the CLI, the API and the service pass it
    await store.erasure.erase(subject, OPERATOR, retire=retire)
    report = await store.retention.purge(RetentionPolicy(recordings_days=0, call_details_days=None, sessions_days=0),
                                         retire=retire)

    assert report.purged[Kind.SESSIONS] == 1 and report.purged[Kind.RECORDINGS] == 2
    assert [p.exists() for p in plain] == [False] * 3
    assert [f.name for f in tmp_path.rglob("*") if f.is_file() and AUDIO[:64] in f.read_bytes()] == []
    for recording_id in recordings:
        row = await store.recordings.get(recording_id)
        assert row["shredded_at"] is not None and await store.recordings.key(recording_id) is None
    assert (await seal_stored_recordings(store)).skipped == 0  # nothing left for the sealing pass


# -- each purpose's own retention (its registry entry), through `masking purge` ------------------
REGISTRY = """
[purposes.quick_check]
description = "Recordings kept one day"
records = true
retention = { recordings_days = 1 }
notice = { text = "x", sha256 = "%s" }

[purposes.plain]
description = "The global periods"
records = true
notice = { text = "x", sha256 = "%s" }

[purposes.dispute_desk]
description = "Kept longer than the global periods"
records = true
retention = { sessions_days = 400, recordings_days = 365 }
notice = { text = "x", sha256 = "%s" }
""" % (("0" * 64,) * 3)


def purge_cli(dsn: str, registry: Path, *args: str, **periods: str):
    """`masking purge` as an operator runs it, on this database, with this registry and these periods."""
    from types import SimpleNamespace

    from tests.integration.test_cli import masking
    from tests.support.keys import keys_file

    env = {"MASKING_DATABASE_URL": dsn, "MASKING_KEYS_FILE": str(keys_file()),
           "MASKING_PURPOSE_REGISTRY": str(registry), "MASKING_RETAIN_RECORDINGS_DAYS": "90",
           "MASKING_RETAIN_CALL_DETAILS_DAYS": "never", "MASKING_RETAIN_SESSIONS_DAYS": "never", **periods}
    return masking(SimpleNamespace(env=env), "purge", *args)


async def aged(store: Store, tmp_path: Path, purpose: str, days: int, closed: bool = True):
    """A session of `purpose` whose recording is `days` old (and, closed, ended as long ago)."""
    session, call_id, recording_id = await session_with_call(store, tmp_path, purpose=purpose, closed=closed)
    async with store.pool.acquire() as conn:
        await conn.execute("UPDATE recordings SET created_at = now() - make_interval(days => $2) WHERE id = $1",
                           recording_id, days)
        if closed:
            await conn.execute("UPDATE masking_sessions SET created_at = now() - make_interval(days => $2 + 1),"
                               " closed_at = now() - make_interval(days => $2) WHERE id = $1", session.id, days)
    return session, recording_id


async def test_a_purposes_own_recordings_period_purges_or_keeps_its_recordings_against_the_global_one(
        store, tmp_path, dsn):
    registry = tmp_path / "purposes.toml"
    registry.write_text(REGISTRY)
    _, short = await aged(store, tmp_path, "quick_check", 2, closed=False)
    _, young_plain = await aged(store, tmp_path, "plain", 2, closed=False)  # global 90 days: kept
    _, old_plain = await aged(store, tmp_path, "plain", 100, closed=False)  # past the global 90 days
    _, long_kept = await aged(store, tmp_path, "dispute_desk", 100, closed=False)  # its 365 days: kept
    _, retired = await aged(store, tmp_path, "retired_code", 100, closed=False)  # not registered: global

    dry = purge_cli(dsn, registry, "--dry-run")
    dry_json = purge_cli(dsn, registry, "--dry-run", "--json")
    real = purge_cli(dsn, registry, "--json")
    again = purge_cli(dsn, registry, "--json")

    assert dry.returncode == 0 and real.returncode == 0, dry.stderr + real.stderr
    assert dry.stdout.splitlines() == [
        "sessions: would purge 0, kept under legal hold 0", "recordings: would purge 3, kept under legal hold 0",
        "call_details: would purge 0, kept under legal hold 0", "webhook_events: would purge 0, kept under legal hold 0"]
    assert json.loads(dry_json.stdout)["kinds"] == json.loads(real.stdout)["kinds"]
    assert json.loads(real.stdout)["kinds"]["recordings"] == {"purged": 3, "held": 0, "batches": 1}
    assert json.loads(again.stdout)["kinds"]["recordings"]["purged"] == 0
    for gone in (short, old_plain, retired):
        assert await store.recordings.key(gone) is None
    for kept in (young_plain, long_kept):
        assert await store.recordings.key(kept) is not None


async def test_a_purposes_own_sessions_period_wins_shorter_or_longer_and_a_hold_still_keeps(store, tmp_path, dsn):
    registry = tmp_path / "purposes.toml"
    registry.write_text(REGISTRY)
    short_days = {"MASKING_RETAIN_SESSIONS_DAYS": "30", "MASKING_RETAIN_RECORDINGS_DAYS": "never"}
    plain, _ = await aged(store, tmp_path, "plain", 40)  # past the global 30 days
    kept, kept_recording = await aged(store, tmp_path, "dispute_desk", 40)  # its 400 days
    held, _ = await aged(store, tmp_path, "quick_check", 40)  # its recording is past its 1 day too
    await store.holds.set(held.id, "case 7", OPERATOR)

    dry = purge_cli(dsn, registry, "--dry-run", "--json", "--batch", "1", **short_days)
    real = purge_cli(dsn, registry, "--json", "--batch", "1", **short_days)

    assert dry.returncode == 0 and real.returncode == 0, dry.stderr + real.stderr
    assert json.loads(dry.stdout)["kinds"] == json.loads(real.stdout)["kinds"]
    report = json.loads(real.stdout)
    assert report["kinds"]["sessions"] == {"purged": 1, "held": 1, "batches": report["kinds"]["sessions"]["batches"]}
    assert report["kinds"]["recordings"]["purged"] == 1  # the plain session's, shredded with it
    assert report["kinds"]["recordings"]["held"] == 1 and report["held_sessions"] == [str(held.id)]
    assert (await store.sessions.get(plain.id)).participant_a is None
    assert (await store.sessions.get(kept.id)).participant_a is not None
    assert await store.recordings.key(kept_recording) is not None


async def test_a_purge_with_a_registry_that_does_not_load_stops_rather_than_apply_the_global_periods(
        store, tmp_path, dsn):
    _, recording_id = await aged(store, tmp_path, "plain", 100, closed=False)  # past the global 90 days

    missing = purge_cli(dsn, tmp_path / "nope.toml")

    assert missing.returncode == 2 and "MASKING_PURPOSE_REGISTRY" in missing.stderr
    assert await store.recordings.key(recording_id) is not None
