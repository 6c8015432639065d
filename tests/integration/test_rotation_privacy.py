"""A lookup-key rotation must not open a privacy hole: rows of different tables
are matched by hash (a withdrawal against sessions, a subject request's
preservation hold against sessions), and mid-rotation they may be under
different keys. A withdrawn person is never recorded, a preserved session never
purged or erased, before, during and after `masking keys rehash`."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bridge.store.errors import RotationInProgress
from bridge.store.preservation import PRESERVED
from bridge.sessions.models import SessionRequest
from tests.integration.test_lookup_key_rotation import OPERATOR, cli, fetch, rotating  # noqa: F401


def request(a: str, b: str, record: bool = False) -> SessionRequest:
    return SessionRequest(a, b, ttl_seconds=3600, record=record, purpose="delivery_order")


def later(days: int = 30) -> datetime:
    return datetime.now(timezone.utc) + timedelta(days=days)


async def recorded(store, virtual_number: str, caller: str) -> list[bool]:
    return [s.record for s in (await store.sessions.route_lookup(virtual_number, caller)).sessions]


async def test_a_withdrawal_before_a_rotation_stops_recording_while_half_rehashed_and_after(rotating):
    store, person, other = rotating.store, "+6593600001", "+6583600001"
    for n in range(3):
        await store.numbers.add(f"+656360000{n}")
    first, _ = await store.sessions.create(request(person, other, record=True))
    second, _ = await store.sessions.create(request(person, "+6583600002", record=True))
    await store.consent.withdraw(person, OPERATOR, datetime.now(timezone.utc), later())
    assert (await cli(rotating, "keys", "add-lookup")).returncode == 0
    # One session row moves to the new key; the do-not-record row is still under the old one.
    assert (await cli(rotating, "keys", "rehash", "--batch", "1", "--batches", "1")).returncode == 0
    labels = {r["id"]: r["lookup_key_id"] for r in await fetch(
        rotating.dsn, "SELECT id, lookup_key_id FROM masking_sessions")}
    [dnr] = await fetch(rotating.dsn, "SELECT lookup_key_id FROM do_not_record")
    assert len(set(labels.values()) | {dnr["lookup_key_id"]}) == 2, "the test needs rows under both keys"

    for session in (first, second):
        assert await recorded(store, session.virtual_number, person) == [False]
        assert await recorded(store, session.virtual_number, session.participant_b) == [False]
        assert await store.consent.session_withdrawn(session.id)
    assert await store.consent.is_withdrawn(person)
    fresh, _ = await store.sessions.create(request(person, "+6583600003", record=True))
    assert not fresh.record, "a session made mid-rotation records a person who withdrew"

    assert (await cli(rotating, "keys", "rehash")).returncode == 0
    [dnr] = await fetch(rotating.dsn, "SELECT lookup_key_id FROM do_not_record")
    assert dnr["lookup_key_id"] == store.keys.lookup_key_id
    for session in (first, second, fresh):
        assert await recorded(store, session.virtual_number, person) == [False]
    assert (await cli(rotating, "keys", "retire-lookup", "l0")).returncode == 0
    assert await recorded(store, first.virtual_number, other) == [False]


async def test_a_preservation_hold_survives_a_rotation_and_purge_and_erasure_wait_for_its_end(rotating):
    store, person, other = rotating.store, "+6593700001", "+6583700001"
    await store.numbers.add("+6563700001")
    session, _ = await store.sessions.create(request(person, other))
    await store.subjects.open_request("access", person, datetime.now(timezone.utc), later(), OPERATOR)

    async def preserved() -> bool:
        [row] = await fetch(rotating.dsn, f"SELECT {PRESERVED} AS held FROM masking_sessions s WHERE s.id = $1",
                            session.id)
        return row["held"]

    assert await preserved()
    assert (await cli(rotating, "keys", "add-lookup")).returncode == 0
    purge = await cli(rotating, "purge", "--dry-run")
    assert purge.returncode != 0 and "rotation is in progress" in purge.stderr + purge.stdout
    with pytest.raises(RotationInProgress):
        await store.erasure.erase(other, OPERATOR)

    assert (await cli(rotating, "keys", "rehash")).returncode == 0
    [request_row] = await fetch(rotating.dsn, "SELECT lookup_key_id FROM subject_requests")
    assert request_row["lookup_key_id"] == store.keys.lookup_key_id
    assert await preserved(), "after the rotation the open request no longer holds its person's session"
    report = await store.erasure.erase(other, OPERATOR)
    assert report.sessions_erased == [] and [k["reason"] for k in report.kept] == ["preservation_hold"]
    assert (await cli(rotating, "purge", "--dry-run")).returncode == 0
