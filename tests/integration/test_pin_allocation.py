"""PIN allocation on a real PostgreSQL: unique among live sessions on a
number, never reused within the quarantine, and the database's own guarantee."""
from __future__ import annotations

import asyncio

import asyncpg
import pytest

from bridge.sessions.models import SessionRequest
from bridge.store.errors import PoolExhausted
import bridge.store.pins as store_pins

SHARED = "+6560003001"
PLAIN = "+6560003002"
DRIVER = "+6583000001"


def request(customer: str, **overrides) -> SessionRequest:
    values = dict(participant_a=customer, participant_b=DRIVER, ttl_seconds=600, record=False,
                  purpose="delivery_order", pin_mode=True)
    return SessionRequest(**(values | overrides))


def customer(n: int) -> str:
    return f"+659300{n:04d}"


async def test_one_driver_holds_a_shared_number_in_many_live_sessions_each_with_its_own_pin(store):
    await store.numbers.add(SHARED, pin_mode=True)
    await store.numbers.add(PLAIN)
    sessions = [(await store.sessions.create(request(customer(n))))[0] for n in range(40)]
    assert {s.virtual_number for s in sessions} == {SHARED}
    pins = [s.pin for s in sessions]
    assert all(len(p) == 4 and p.isdigit() for p in pins)
    assert len(set(pins)) == len(pins)
    # A plain session never lands on the shared number, and has no PIN.
    plain, _ = await store.sessions.create(request(customer(99), pin_mode=False))
    assert (plain.virtual_number, plain.pin) == (PLAIN, None)


async def test_concurrent_creates_never_share_a_pin(store):
    await store.numbers.add(SHARED, pin_mode=True)
    created = await asyncio.gather(*(store.sessions.create(request(customer(n), pin_length=3)) for n in range(30)))
    pins = [s.pin for s, _ in created]
    assert len(set(pins)) == 30 and all(len(p) == 3 for p in pins)


async def test_the_database_refuses_a_second_live_session_with_the_same_pin(store):
    await store.numbers.add(SHARED, pin_mode=True)
    first, _ = await store.sessions.create(request(customer(1)))
    second, _ = await store.sessions.create(request(customer(2)))
    async with store.pool.acquire() as conn:
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute("UPDATE masking_sessions SET pin = $1 WHERE id = $2", first.pin, second.id)
        # Once the first session is closed its PIN may (the index allows it) go to another session.
        await store.sessions.close(first.id)
        await conn.execute("UPDATE masking_sessions SET pin = $1 WHERE id = $2", first.pin, second.id)


@pytest.mark.parametrize(("quarantine", "reusable"), [(3600, False), (0, True)])
async def test_an_ended_sessions_pin_is_not_reused_within_the_quarantine(store, monkeypatch, quarantine, reusable):
    await store.numbers.add(SHARED, pin_mode=True)
    ended, _ = await store.sessions.create(request(customer(1)))
    await store.sessions.close(ended.id)
    expired, _ = await store.sessions.create(request(customer(2), ttl_seconds=1))
    await asyncio.sleep(1.2)
    offered: list[set[str]] = []
    real_choose = store_pins.choose_pin

    def recording_choose(taken, length):
        offered.append(set(taken))
        return real_choose(taken, length)

    monkeypatch.setattr(store_pins, "choose_pin", recording_choose)
    live, _ = await store.sessions.create(request(customer(3), pin_quarantine_seconds=quarantine))
    assert live.pin not in ({ended.pin, expired.pin} if not reusable else set())
    assert offered
    for taken in offered:
        assert (ended.pin in taken) is not reusable
        assert (expired.pin in taken) is not reusable


async def test_a_pin_names_its_session_for_the_call_path(store):
    await store.numbers.add(SHARED, pin_mode=True)
    session, _ = await store.sessions.create(request(customer(1), pin_unknown_callers=True))
    lookup = await store.pins.lookup(SHARED, session.pin)
    assert [s.id for s in lookup.sessions] == [session.id]
    assert lookup.sessions[0].pin_unknown_callers
    route = await store.sessions.route_lookup(SHARED, customer(1))
    assert route.pin_mode


async def test_no_shared_number_is_a_clear_pool_exhausted(store):
    await store.numbers.add(PLAIN)
    with pytest.raises(PoolExhausted):
        await store.sessions.create(request(customer(1)))


from tests.integration.test_api import api, create  # noqa: E402,F401  (the API client fixture)


async def test_the_api_adds_a_shared_number_and_sessions_on_it_show_their_pin(api):
    resp = await api.post("/v1/numbers", json={"number": SHARED, "pin_mode": True})
    assert resp.status == 201 and (await resp.json())["pin_mode"] is True
    await api.post("/v1/numbers", json={"number": PLAIN})

    shared = [await create(api, a=customer(n), b=DRIVER, pin_mode=True, pin_unknown_callers=n == 0) for n in range(3)]
    plain = await create(api, a=customer(9), b=DRIVER)

    assert {s["virtual_number"] for s in shared} == {SHARED}
    assert len({s["pin"] for s in shared}) == 3 and all(len(s["pin"]) == 4 for s in shared)
    assert [s["pin_unknown_callers"] for s in shared] == [True, False, False]
    assert plain["virtual_number"] == PLAIN and plain["pin"] is None
    shown = await (await api.get(f"/v1/sessions/{shared[1]['id']}")).json()
    assert shown["pin"] == shared[1]["pin"]
    listed = {n["number"]: n for n in (await (await api.get("/v1/numbers")).json())["numbers"]}
    assert listed[SHARED]["pin_mode"] and listed[SHARED]["live_sessions"] == 3 and not listed[PLAIN]["pin_mode"]


async def test_a_number_whose_pins_are_all_taken_sends_new_sessions_to_the_next_one(store):
    other = "+6560003003"
    await store.numbers.add(SHARED, pin_mode=True)
    first, _ = await store.sessions.create(request(customer(1), pin_length=3))
    async with store.pool.acquire() as conn:  # every other 3-digit PIN on SHARED, live
        await conn.execute(
            "INSERT INTO masking_sessions (id, virtual_number, participant_a_hash, participant_b_hash,"
            " participant_a_sealed, participant_b_sealed, key_id, record, expires_at, purpose, pin, lookup_key_id)"
            " SELECT gen_random_uuid(), s.virtual_number, s.participant_a_hash, s.participant_b_hash,"
            " s.participant_a_sealed, s.participant_b_sealed, s.key_id, false, s.expires_at, s.purpose,"
            " lpad(g::text, 3, '0'), s.lookup_key_id FROM masking_sessions s, generate_series(0, 999) g"
            " WHERE s.id = $1 AND lpad(g::text, 3, '0') <> s.pin", first.id)
    with pytest.raises(PoolExhausted):
        await store.sessions.create(request(customer(2), pin_length=3))
    await store.numbers.add(other, pin_mode=True)

    moved, _ = await store.sessions.create(request(customer(2), pin_length=3))
    longer, _ = await store.sessions.create(request(customer(3), pin_length=4))

    assert moved.virtual_number == other
    assert longer.virtual_number == other  # fewest live sessions first


async def test_per_participant_sessions_never_take_a_shared_number(store):
    from bridge.store.errors import NumberUnavailable

    await store.numbers.add(SHARED, pin_mode=True)
    for n in range(2):
        await store.numbers.add(f"+656000310{n}")
    pair, _ = await store.sessions.create(request(customer(1), pin_mode=False, caller_id_policy="per_participant"))
    assert SHARED not in (pair.virtual_number, pair.virtual_number_b) and pair.pin is None
    with pytest.raises(NumberUnavailable):
        await store.sessions.create(request(customer(2), pin_mode=False, caller_id_policy="per_participant",
                                           virtual_number_b=SHARED))


async def test_the_api_refuses_a_pin_on_a_per_participant_session(api):
    resp = await api.post("/v1/sessions", json={"participant_a": customer(1), "participant_b": DRIVER,
                                                "purpose": "delivery_order", "pin_mode": True,
                                                "caller_id_policy": "per_participant"})
    body = await resp.json()
    assert resp.status == 422 and body["error"]["field"] == "pin_mode", body
