"""Rotating the lookup key (docs/security.md, "Rotating the lookup key"): while
rows are hashed under two keys, and after, every lookup still finds them (a real
call routed, subject access and erasure, PIN counts, live-participant
uniqueness), and `masking keys rehash` survives being stopped and `kill -9`."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import asyncpg
import pytest

from bridge.privacy.audit import Actor
from bridge.privacy.crypto import KeyRing
from bridge.sessions.models import SessionRequest
from bridge.sessions.pin_guard import GuardLimits
from bridge.store import Store
from bridge.store.apikeys import DEFAULT_ACCOUNT_ID
from bridge.store.errors import NumberInUse
from bridge.store.lookup_keys import EXPIRING, KEPT, REHASHED, UNLABELLED
from bridge.subjects.export import read_holdings
from tests.integration.conftest import new_parties, query, wait_for_call_row
from tests.integration.test_cli import REPO, masking
from tests.integration.test_pin_calls import shared_number, wrong_pins
from tests.integration.test_pin_guessing import guarded, guess  # noqa: F401 (a fixture)
from tests.integration.test_pin_paths import assert_row, heard

OPERATOR = Actor("cli:test", "cli@test")


def request(a: str, b: str, **fields) -> SessionRequest:
    return SessionRequest(a, b, ttl_seconds=3600, record=False, purpose="delivery_order", **fields)


@pytest.fixture
async def rotating(store, dsn, tmp_path):
    """A store whose key file is this test's own (the module's shared one stays as it is)."""
    KeyRing.load(store.keys.path).save(tmp_path / "keys.json")
    own = Store(store.pool, KeyRing.load(tmp_path / "keys.json"), store.timeout)
    env = {"MASKING_DATABASE_URL": dsn, "MASKING_KEYS_FILE": str(tmp_path / "keys.json"),
           "MASKING_STATE_DIR": str(tmp_path)}
    return SimpleNamespace(store=own, env=env, dsn=dsn)


async def cli(rotating, *args: str) -> subprocess.CompletedProcess:
    result = await asyncio.to_thread(masking, rotating, *args)
    rotating.store.keys.reload()  # as a running service does within a second
    return result


async def fetch(dsn: str, sql: str, *args) -> list[dict]:
    conn = await asyncpg.connect(dsn)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def lookup_counts(rotating) -> dict[str, dict]:
    result = await cli(rotating, "keys", "status", "--json")
    assert result.returncode == 0, result.stderr
    return {k["key_id"]: k for k in json.loads(result.stdout)["keys"] if k["kind"] == "lookup"}


# -- the call path, through SIPp and Asterisk ------------------------------------------------
def call_reaches(place_call, caller: str, virtual_number: str, counterpart: str) -> None:
    call = place_call(caller, virtual_number, uas="uas_answer.xml", talk_ms=1000)
    assert call.counterpart.succeeded, call.counterpart.output
    invite = next(m for m in call.counterpart.received() if m.startswith("INVITE"))
    assert re.search(r"^To: <sip:" + re.escape(counterpart) + "@", invite, re.M), invite
    assert caller not in "\n".join(call.counterpart.received())


def test_calls_are_routed_while_half_the_rows_are_rehashed_and_after(stack, place_call):
    before = [new_parties(stack, record=False) for _ in range(2)]
    added = masking(stack, "keys", "add-lookup")
    assert added.returncode == 0, added.stderr
    new_id = stack.keys.lookup_key_id
    after = new_parties(stack, record=False)  # hashed under the new key
    partial = masking(stack, "keys", "rehash", "--batch", "1", "--batches", "1")
    assert partial.returncode == 0, partial.stderr
    labels = {r["virtual_number"]: r["lookup_key_id"] for r in query(
        stack.dsn, "SELECT virtual_number, lookup_key_id FROM masking_sessions WHERE virtual_number = ANY($1)",
        [p.virtual_number for p in (*before, after)])}
    assert labels[after.virtual_number] == new_id and any(labels[p.virtual_number] != new_id for p in before), labels

    call_reaches(place_call, before[0].a, before[0].virtual_number, before[0].b)
    call_reaches(place_call, before[1].b, before[1].virtual_number, before[1].a)
    call_reaches(place_call, after.a, after.virtual_number, after.b)
    stranger = place_call("+6597770123", before[0].virtual_number, uac="uac_rejected.xml",
                          uac_values={"final_status": 403, "tag": "stranger_rotation"})
    assert stranger.caller.succeeded, stranger.caller.output

    done = masking(stack, "keys", "rehash")
    assert done.returncode == 0, done.stderr
    left = query(stack.dsn, "SELECT count(*) AS n FROM masking_sessions s JOIN session_participants p"
                            " ON p.session_id = s.id WHERE s.lookup_key_id <> $1 OR p.lookup_key_id <> $1", new_id)
    assert left[0]["n"] == 0
    call_reaches(place_call, before[0].b, before[0].virtual_number, before[0].a)
    call_reaches(place_call, after.b, after.virtual_number, after.a)
    assert wait_for_call_row(stack, after.virtual_number)["disposition"] == "answered"


def test_a_guesser_locked_out_across_a_rotation_by_wrong_pins_counted_under_both_keys(
        guarded, place_call, tmp_path):
    number, _driver, (session,) = shared_number(guarded, customers=1)
    wrong = wrong_pins({session.pin}, 3)

    before = guess(place_call, session.participant_a, number, wrong[0] + wrong[1], tmp_path)  # 2 under the old key
    added = masking(guarded, "keys", "add-lookup")
    time.sleep(1.1)  # the service reads the key file at most once a second
    after = guess(place_call, session.participant_a, number, wrong[2], tmp_path)  # the 3rd, under the new key
    right = guess(place_call, session.participant_a, number, session.pin, tmp_path)

    assert added.returncode == 0 and before.caller.succeeded and after.caller.succeeded, added.stderr
    assert right.caller.succeeded, right.caller.output
    rejected = right.caller.first("received", "SIP/2.0 403")
    assert heard(right, "PIN_REQUEST", until=rejected) == 0, "the rotation let a locked-out guesser key PINs again"
    assert not any(m.startswith("SIP/2.0 200") for m in right.caller.received())
    assert_row(guarded, number, "ari", disposition="rejected", reject_reason="pin_locked", callee_channel_id=None,
               pin_attempts=0)
    # The rotation finished, as an operator would: purge and erasure wait for it (test_rotation_privacy.py).
    assert masking(guarded, "keys", "rehash").returncode == 0


# -- subject access and erasure ---------------------------------------------------------------
async def test_subject_access_and_erasure_after_rotation_find_every_session_and_disclosure(rotating):
    store, subject = rotating.store, "+6591110001"
    for n in range(3):
        await store.numbers.add(f"+656110000{n}")
    first, _ = await store.sessions.create(request(subject, "+6581110001"))
    opened = await store.subjects.open_request("erasure", subject, datetime.now(timezone.utc),
                                               datetime.now(timezone.utc) + timedelta(days=30), OPERATOR)
    await store.audit.append_by(OPERATOR, "session.numbers_read", "session", str(first.id),
                                subject_hash=store.keys.lookup_hash(subject))  # a disclosure under the old key
    assert (await cli(rotating, "keys", "add-lookup")).returncode == 0
    second, _ = await store.sessions.create(request(subject, "+6581110002"))
    other, _ = await store.sessions.create(request("+6591110009", "+6581110009"))
    assert (await cli(rotating, "keys", "rehash", "--batch", "1", "--batches", "1")).returncode == 0

    holdings = await read_holdings(store, subject, datetime.now(timezone.utc))
    outsider = await read_holdings(store, "+6591110009", datetime.now(timezone.utc))

    assert {s.id for s in holdings.sessions} == {first.id, second.id}
    assert "session.numbers_read" in [e.action for e in holdings.disclosures]
    assert [e.action for e in outsider.disclosures if e.action == "session.numbers_read"] == []
    assert {s.id for s in outsider.sessions} == {other.id}, "another number's export shows the subject's sessions"
    assert (await cli(rotating, "keys", "rehash")).returncode == 0
    report = await store.erasure.erase(subject, OPERATOR, request_id=opened.id)
    assert set(report.sessions_erased) == {first.id, second.id}
    assert (await store.subjects.sessions(store.keys.kept_hashes(subject))) == []
    assert [s.id for s in await store.subjects.sessions(store.keys.kept_hashes("+6591110009"))] == [other.id]


# -- the rehash itself ------------------------------------------------------------------------------
async def sessions_for(store, count: int, prefix: str) -> list:
    made = []
    for n in range(count):
        await store.numbers.add(f"+6562{prefix}{n:04d}")
        session, _ = await store.sessions.create(request(f"+6592{prefix}{n:04d}", f"+6582{prefix}{n:04d}"))
        made.append(session)
    return made


async def all_routed(store, sessions) -> bool:
    for session in sessions:
        found = await store.sessions.route_lookup(session.virtual_number, session.participant_a)
        if [s.id for s in found.sessions] != [session.id]:
            return False
    return True


async def test_rehash_stopped_early_resumes_and_a_second_run_changes_nothing(rotating):
    store = rotating.store
    sessions = await sessions_for(store, 6, "31")
    assert (await cli(rotating, "keys", "add-lookup")).returncode == 0
    new_id = store.keys.lookup_key_id

    stopped = await cli(rotating, "keys", "rehash", "--batch", "2", "--batches", "1")
    middle = await lookup_counts(rotating)
    resumed = await cli(rotating, "keys", "rehash", "--batch", "2")
    again = await cli(rotating, "keys", "rehash", "--batch", "2")

    assert stopped.returncode == resumed.returncode == again.returncode == 0
    assert middle["l0"]["rows"]["masking_sessions"] == 4 and middle[new_id]["rows"]["masking_sessions"] == 2
    assert "none left" in resumed.stdout and "re-hashed or dropped 0 row(s)" in again.stdout
    final = await lookup_counts(rotating)
    assert final[new_id]["rows"]["masking_sessions"] == 6 and final[new_id]["rows"]["session_participants"] == 12
    assert final["l0"]["hashed_rows"] == 0 and final["l0"]["state"] == "in use"
    assert await all_routed(store, sessions)


async def test_rehash_killed_mid_batch_leaves_no_half_batch_and_a_rerun_finishes(rotating):
    store = rotating.store
    sessions = await sessions_for(store, 5, "32")
    assert (await cli(rotating, "keys", "add-lookup")).returncode == 0
    blocker = await asyncpg.connect(rotating.dsn)
    tx = blocker.transaction()
    await tx.start()
    # The batch re-hashes sessions first, then waits here for the participants' rows.
    await blocker.execute("LOCK TABLE session_participants IN EXCLUSIVE MODE")
    process = subprocess.Popen([sys.executable, "-m", "bridge.cli", "keys", "rehash"], cwd=REPO,
                               env={**os.environ, **rotating.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watcher = await asyncpg.connect(rotating.dsn)  # outside the blocker's transaction, which sees a snapshot
    try:
        deadline, waiting = time.monotonic() + 30, None
        while waiting is None and time.monotonic() < deadline:
            waiting = await watcher.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'masking-bridge'"
                " AND wait_event_type = 'Lock' AND datname = current_database()")
            await asyncio.sleep(0.02)
        assert waiting is not None, process.communicate(timeout=30)
        in_batch = await watcher.fetchval("SELECT count(*) FROM pg_locks WHERE pid = $1 AND mode = 'RowExclusiveLock'",
                                          waiting)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        await tx.rollback()
        await blocker.close()
        await watcher.close()
    for _ in range(100):  # the server notices the dead client and rolls its batch back
        if not await fetch(rotating.dsn, "SELECT 1 FROM pg_stat_activity WHERE pid = $1", waiting):
            break
        await asyncio.sleep(0.1)

    killed = await lookup_counts(rotating)
    rerun = await cli(rotating, "keys", "rehash")

    assert in_batch >= 1 and process.returncode == -signal.SIGKILL
    assert killed["l0"]["rows"]["masking_sessions"] == 5, "a killed batch left rows half re-hashed"
    assert rerun.returncode == 0 and "none left" in rerun.stdout, rerun.stdout + rerun.stderr
    assert await all_routed(store, sessions)


async def test_retiring_a_lookup_key_is_refused_while_rows_use_it(rotating):
    store = rotating.store
    sessions = await sessions_for(store, 2, "33")
    assert (await cli(rotating, "keys", "add-lookup")).returncode == 0

    refused = await cli(rotating, "keys", "retire-lookup", "l0")
    assert refused.returncode == 2 and "rehash" in refused.stderr
    assert (await cli(rotating, "keys", "rehash")).returncode == 0
    retired = await cli(rotating, "keys", "retire-lookup", "l0")

    assert retired.returncode == 0, retired.stderr
    assert store.keys.lookup.in_use == ["l1"] and (await lookup_counts(rotating))["l0"]["state"] == "retired"
    assert await all_routed(store, sessions)
    active = await cli(rotating, "keys", "retire-lookup", "l1")
    assert active.returncode == 2


async def test_every_table_holding_a_keyed_hash_takes_part_in_rotation(store):
    """A table added with a number's hash but not registered would keep it under the
    old key forever, and lose it when that key is retired."""
    async with store.pool.acquire() as conn:
        hashed = {r["table_name"] for r in await conn.fetch(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public'"
            " AND (column_name LIKE '%\\_hash' OR column_name = 'lookup_key_id')")}
        labelled = {r["table_name"] for r in await conn.fetch(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public'"
            " AND column_name = 'lookup_key_id'")}
    registered = [t.table for t in REHASHED + EXPIRING] + KEPT
    not_numbers = {"api_keys", "console_sessions"}  # SHA-256 of secrets they issued, not of numbers

    assert {"masking_sessions", "audit_log", "idempotency_keys"} <= hashed
    assert hashed - not_numbers <= set(registered + UNLABELLED), "a table with a hash is not registered"
    assert set(registered) <= labelled, "a registered table has no lookup_key_id"


# -- uniqueness, PINs, idempotency across keys ---------------------------------------------------------
async def test_a_participant_holding_a_number_under_the_old_key_cannot_take_it_again_under_the_new(rotating):
    store = rotating.store
    await store.numbers.add("+6563400001")
    await store.numbers.add("+6563400002")
    held, _ = await store.sessions.create(request("+6593400001", "+6583400001", virtual_number="+6563400001"))
    assert (await cli(rotating, "keys", "add-lookup")).returncode == 0

    with pytest.raises(NumberInUse):
        await store.sessions.create(request("+6593400001", "+6583400002", virtual_number="+6563400001"))
    allocated, _ = await store.sessions.create(request("+6593400001", "+6583400003"))

    assert allocated.virtual_number == "+6563400002", "two live sessions for one caller on one number"
    routed = await store.sessions.route_lookup("+6563400001", "+6593400001")
    assert [s.id for s in routed.sessions] == [held.id]


async def test_wrong_pins_counted_under_the_old_key_still_count_and_lock_the_caller_out(rotating):
    store, caller, other = rotating.store, "+6593500001", "+6593500002"
    limits, now = GuardLimits(caller_failures=4), datetime.now(timezone.utc)
    for _ in range(3):
        await store.pin_failures.record(caller, "+6563500001", limits, now)
    await store.pin_failures.record(other, "+6563500001", limits, now)
    assert (await cli(rotating, "keys", "add-lookup")).returncode == 0

    carried, _, _ = await store.pin_failures.counts(caller, "+6563500009")
    fourth, _ = await store.pin_failures.record(caller, "+6563500001", limits, now)
    outsider, _, _ = await store.pin_failures.counts(other, "+6563500009")

    assert carried.failures == 3
    assert fourth.locked(now), "the rotation reset a guesser's count"
    assert outsider.failures == 1 and not outsider.locked(now)
    rows = await fetch(rotating.dsn, "SELECT lookup_key_id FROM pin_failures WHERE scope = 'caller' AND key = ANY($1)",
                 [h.hex() for h in store.keys.lookup_hashes(caller)])
    assert [r["lookup_key_id"] for r in rows] == ["l1"]


async def test_a_retried_create_after_rotation_returns_the_first_session(rotating, store):
    rotating_store = rotating.store
    await rotating_store.numbers.add("+6563600001")
    await rotating_store.numbers.add("+6563600002")
    api_key_id = uuid.uuid4()
    async with store.pool.acquire() as conn:
        await conn.execute("INSERT INTO api_keys (id, name, prefix, key_hash, scopes, account_id)"
                           " VALUES ($1, 't', $2, 'x', '{}', $3)",
                           api_key_id, api_key_id.hex[:8], DEFAULT_ACCOUNT_ID)
    body = json.dumps({"a": "+6593600001", "b": "+6583600001"}).encode()

    def idempotency():
        return api_key_id, "retry-1", rotating_store.keys.keyed_digests("idempotency", body)

    first, created = await rotating_store.sessions.create(request("+6593600001", "+6583600001"), idempotency())
    assert (await cli(rotating, "keys", "add-lookup")).returncode == 0
    again, created_again = await rotating_store.sessions.create(request("+6593600001", "+6583600001"), idempotency())

    assert created and not created_again and again.id == first.id
