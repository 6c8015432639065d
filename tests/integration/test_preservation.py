"""The preservation hold on a real PostgreSQL: while a person's access or
correction request is open, or for 30 days after one was refused, purge and
erasure keep every session they took part in whole; erasing the other party
does not anonymise those shared sessions either. After that, retention
applies again."""
from __future__ import annotations

from datetime import timedelta

from bridge.clock import utcnow
from bridge.privacy.retention import Kind
from bridge.store import Store
from tests.integration.test_retention import NOTHING_KEPT, OPERATOR, rows, session_with_call


async def request(store: Store, number: str, kind: str = "access"):
    now = utcnow()
    return await store.subjects.open_request(kind, number, now, now + timedelta(days=30), OPERATOR)


async def refused_days_ago(store: Store, number: str, days: int):
    """A request refused `days` ago (the clock moved as a DBA could, to stand for the wait)."""
    opened = await request(store, number)
    await store.subjects.complete_request(opened.id, OPERATOR, "refused", "not enough detail to identify")
    async with store.pool.acquire() as conn:
        await conn.execute("UPDATE subject_requests SET completed_at = now() - make_interval(days => $2),"
                           " received_at = received_at - make_interval(days => $2),"
                           " due_at = due_at - make_interval(days => $2) WHERE id = $1", opened.id, days)
    return opened


async def anonymised(store: Store, session_id) -> bool:
    [row] = await rows(store, "SELECT anonymised_at FROM masking_sessions WHERE id = $1", session_id)
    return row["anonymised_at"] is not None


async def test_an_open_access_request_keeps_the_persons_data_through_purge_and_erasure(store, tmp_path):
    session, call_id, recording_id = await session_with_call(store, tmp_path)
    opened = await request(store, session.participant_a)

    purged = await store.retention.purge(NOTHING_KEPT, by=OPERATOR)
    erased = await store.erasure.erase(session.participant_a, OPERATOR)

    assert purged.purged[Kind.SESSIONS] == 0 and purged.purged[Kind.RECORDINGS] == 0
    assert purged.held[Kind.SESSIONS] == 1 and session.id in purged.held_sessions
    assert erased.sessions_erased == [] and erased.kept == [
        {"session_id": str(session.id), "reason": "preservation_hold", "legal_hold_reason": None}]
    assert await store.recordings.key(recording_id) is not None
    assert (await store.calls.get(call_id))["custom_field"] == "order 1234"
    # Answered: retention applies again at the next purge.
    await store.subjects.complete_request(opened.id, OPERATOR, "done")
    assert (await store.retention.purge(NOTHING_KEPT)).purged[Kind.SESSIONS] == 1
    assert await anonymised(store, session.id) and await store.recordings.key(recording_id) is None


async def test_erasing_one_number_spares_the_sessions_of_the_other_party_while_their_request_is_open(
        store, tmp_path):
    shared, _, shared_recording = await session_with_call(store, tmp_path)
    other, _, _ = await session_with_call(store, tmp_path, a=shared.participant_a)  # with someone else
    await request(store, shared.participant_b, "correction")  # B, not the person being erased

    erased = await store.erasure.erase(shared.participant_a, OPERATOR)

    assert erased.sessions_erased == [other.id]
    assert [k["session_id"] for k in erased.kept] == [str(shared.id)]
    assert not await anonymised(store, shared.id) and await anonymised(store, other.id)
    assert await store.recordings.key(shared_recording) is not None
    assert (await store.sessions.get(shared.id)).participant_b == shared.participant_b


async def test_a_refused_request_keeps_the_data_for_30_days_and_then_the_purge_takes_it(store, tmp_path):
    recent, _, recent_recording = await session_with_call(store, tmp_path)
    old, _, old_recording = await session_with_call(store, tmp_path)
    await refused_days_ago(store, recent.participant_a, 10)
    await refused_days_ago(store, old.participant_b, 31)

    purged = await store.retention.purge(NOTHING_KEPT, by=OPERATOR)
    erased = await store.erasure.erase(recent.participant_a, OPERATOR)

    assert purged.purged[Kind.SESSIONS] == 1 and purged.held_sessions == {recent.id}
    assert not await anonymised(store, recent.id) and await store.recordings.key(recent_recording) is not None
    assert await anonymised(store, old.id) and await store.recordings.key(old_recording) is None
    assert [k["reason"] for k in erased.kept] == ["preservation_hold"]


async def test_an_erasure_request_alone_does_not_hold_what_it_asks_to_erase(store, tmp_path):
    session, _, recording_id = await session_with_call(store, tmp_path)
    erasure = await request(store, session.participant_a, "erasure")

    erased = await store.erasure.erase(session.participant_a, OPERATOR, request_id=erasure.id)

    assert erased.sessions_erased == [session.id] and erased.kept == []
    assert await store.recordings.key(recording_id) is None


async def test_a_request_about_an_unrelated_number_holds_nothing(store, tmp_path):
    session, _, _ = await session_with_call(store, tmp_path)
    await request(store, "+6599990000")

    purged = await store.retention.purge(NOTHING_KEPT)

    assert purged.purged[Kind.SESSIONS] == 1 and purged.held_sessions == set()
    assert await anonymised(store, session.id)
