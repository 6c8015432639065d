"""Per-participant caller ID through the real stack: SIPp, Asterisk, service, PostgreSQL.

A per_participant session gives each participant a virtual number of their
own: A dials X_A and B's phone shows X_B; B dials X_B and A's phone shows X_A.
What counts is what reached the far end (every header of every message it
received, in every spelling of a number) and what the database holds.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from itertools import count

import pytest

from bridge.clock import utcnow
from bridge.sessions.resolve import Connect, resolve_route
from tests.integration.conftest import wait_for_call_row
from tests.integration.test_api import api, create, error_code, numbers  # noqa: F401 (fixture)
from tests.integration.test_api_call import api_token  # noqa: F401 (fixture)
from tests.integration.test_cli import masking
from tests.integration.test_connect import dialogs, invited, parties_sipp, place
from tests.integration.test_faults import fastagi_fallback, restore_service  # noqa: F401 (fixture)
from tests.integration.test_masked_call import assert_no_leftovers, number_forms

_serial = count(1)


def fresh(stack) -> tuple[str, str, str, str]:
    """(X_A, X_B, A, B): two new pool numbers and two participants."""
    n = next(_serial)
    x_a, x_b = f"+656600{n:04d}", f"+656610{n:04d}"
    for number in (x_a, x_b):
        assert masking(stack, "numbers", "add", "--reserved", number).returncode == 0
    return x_a, x_b, f"+659660{n:04d}", f"+658660{n:04d}"


def per_participant_session(stack, record: bool = False) -> tuple[str, str, str, str]:
    """A live per_participant session on two fresh numbers, made with the CLI."""
    x_a, x_b, a, b = fresh(stack)
    created = masking(stack, "sessions", "create", "--purpose", "delivery_order", "--a", a, "--b", b,
                      "--caller-id", "per_participant", "--number", x_a, "--number-b", x_b,
                      *(() if record else ("--no-record",)))
    assert created.returncode == 0, created.stderr
    session = json.loads(created.stdout)
    assert (session["caller_id_policy"], session["virtual_number"], session["virtual_number_b"]) == \
        ("per_participant", x_a, x_b)
    return x_a, x_b, a, b


def assert_shows_only(messages: list[str], shown: str, hidden: tuple[str, ...]) -> None:
    """The INVITE shows `shown` as From and PAI; no form of a `hidden` number anywhere."""
    invite = next(m for m in messages if m.startswith("INVITE"))
    from_line = next(line for line in invite.splitlines() if line.startswith("From:"))
    pai_line = next(line for line in invite.splitlines() if line.startswith("P-Asserted-Identity:"))
    assert f"<sip:{shown}@" in from_line and f"<sip:{shown}@" in pai_line, invite
    everything = "\n".join(messages)
    for number in hidden:
        for form in number_forms(number):
            assert form not in everything, f"a number this party must not see reached it: {form}"
    assert "Remote-Party-ID:" not in everything and "Diversion:" not in everything


def test_the_cli_refuses_a_second_number_the_policy_does_not_use(stack):
    x_a, x_b, a, b = fresh(stack)
    base = ("sessions", "create", "--purpose", "delivery_order", "--a", a, "--b", b)

    shared = masking(stack, *base, "--number-b", x_b)
    same = masking(stack, *base, "--caller-id", "per_participant", "--number", x_a, "--number-b", x_a)

    assert shared.returncode == 2 and "--caller-id per_participant" in shared.stderr
    assert same.returncode == 2 and "must differ" in same.stderr
    assert x_a not in shared.stderr + same.stderr, "the error repeats a number"


def test_a_dialing_their_number_rings_b_showing_b_s_own_number_only(stack, place_call):
    x_a, x_b, a, b = per_participant_session(stack, record=True)

    call = place_call(a, x_a, uas="uas_answer.xml", talk_ms=2500)

    assert call.caller.succeeded, call.caller.output
    assert call.counterpart.succeeded, call.counterpart.output
    received = call.counterpart.received()
    assert f"To: <sip:{b}@" in next(m for m in received if m.startswith("INVITE"))
    assert_shows_only(received, x_b, hidden=(a, x_a))
    assert call.counterpart_rtp.level > 200, "no media reached B"
    row = wait_for_call_row(stack, x_a, with_recording=True)
    assert (row["virtual_number"], row["direction"], row["disposition"]) == (x_a, "a_to_b", "answered")
    assert row["recording"] is not None
    assert_no_leftovers(stack)


def test_b_dialing_their_number_rings_a_showing_a_s_own_number_only(stack, place_call):
    x_a, x_b, a, b = per_participant_session(stack)

    call = place_call(b, x_b, uas="uas_answer.xml", talk_ms=2000)

    assert call.counterpart.succeeded, call.counterpart.output
    received = call.counterpart.received()
    assert f"To: <sip:{a}@" in next(m for m in received if m.startswith("INVITE"))
    assert_shows_only(received, x_a, hidden=(b, x_b))
    row = wait_for_call_row(stack, x_b)
    assert (row["virtual_number"], row["direction"], row["disposition"]) == (x_b, "b_to_a", "answered")
    assert_no_leftovers(stack)


@pytest.mark.parametrize("who", ["a", "b"])
def test_dialing_the_other_participants_number_is_refused_as_not_a_participant(stack, place_call, who):
    # X_B is B's contact for A; A never saw it, so A dialing it is a stranger's call (and vice versa).
    x_a, x_b, a, b = per_participant_session(stack)
    caller, dialed = (a, x_b) if who == "a" else (b, x_a)

    call = place_call(caller, dialed, uac="uac_rejected.xml", uac_values={"final_status": 403, "tag": f"wrong-{who}"})

    assert call.caller.succeeded, call.caller.output
    assert call.caller_rtp.packets > 50 and call.caller_rtp.level > 100, "caller heard no prompt"
    row = wait_for_call_row(stack, dialed)
    assert (row["disposition"], row["reject_reason"]) == ("rejected", "not_a_participant")
    assert row["callee_channel_id"] is None, "someone was dialed"
    assert_no_leftovers(stack)


def test_click_to_call_shows_each_party_their_own_number(stack, api_token, tmp_path):
    x_a, x_b, a, b = fresh(stack)
    status, body = call_api_session(stack, api_token, a, b, x_a, x_b)
    assert status == 201, body
    session = json.loads(body)
    parties = parties_sipp(stack, tmp_path, "uas_connect.xml", second=a.lstrip("+"))

    status, _, placed = place(stack, api_token, session["id"], **{"from": "b"})
    assert status == 202, placed
    result = parties.wait(60)

    assert result.succeeded, result.output
    first_call, second_call = dialogs(result)
    assert (invited(first_call), invited(second_call)) == (b, a)
    assert_shows_only([m.text for m in first_call if m.received], x_b, hidden=(a, x_a))
    assert_shows_only([m.text for m in second_call if m.received], x_a, hidden=(b, x_b))
    # The row is the first party's, as if B had dialed their number.
    row = wait_for_call_row(stack, x_b)
    assert (str(row["id"]), row["kind"], row["direction"], row["disposition"]) == \
        (placed["call_id"], "connect", "b_to_a", "answered")
    assert_no_leftovers(stack)


def call_api_session(stack, token, a, b, x_a, x_b):
    from tests.integration.test_api_call import call_api

    return call_api(stack, token, "POST", "/v1/sessions", {
        "participant_a": a, "participant_b": b, "purpose": "delivery_order", "record": False,
        "caller_id_policy": "per_participant", "virtual_number": x_a, "virtual_number_b": x_b})


def test_the_fastagi_fallback_shows_the_counterpart_their_own_number_too(stack, place_call, restore_service,
                                                                         tmp_path):
    x_a, x_b, a, b = per_participant_session(stack)
    with fastagi_fallback(stack, tmp_path / "agi.log"):
        call = place_call(b, x_b, uas="uas_answer.xml", talk_ms=2000)

        assert call.counterpart.succeeded, call.counterpart.output
        assert_shows_only(call.counterpart.received(), x_a, hidden=(b, x_b))
        row = wait_for_call_row(stack, x_b)
        assert (row["path"], row["direction"], row["disposition"]) == ("agi", "b_to_a", "answered")


# -- sessions and the pool, over the API (no Asterisk) -----------------------------------
async def test_a_per_participant_session_holds_one_number_per_participant(api, store):
    await numbers(store, "+6560003001", "+6560003002", "+6560003003")

    session = await create(api, caller_id_policy="per_participant")

    x_a, x_b = session["virtual_number"], session["virtual_number_b"]
    assert session["caller_id_policy"] == "per_participant" and x_a != x_b and x_b.startswith("+656000300")
    async with store.pool.acquire() as conn:
        held = {(r["role"], r["virtual_number"], r["live"]) for r in await conn.fetch(
            "SELECT * FROM session_participants WHERE session_id = $1", uuid.UUID(session["id"]))}
    assert held == {("a", x_a, True), ("b", x_b, True)}
    lookup_a = await store.sessions.route_lookup(x_a, session["participant_a"])
    lookup_b = await store.sessions.route_lookup(x_b, session["participant_b"])
    wrong = await store.sessions.route_lookup(x_b, session["participant_a"])
    assert [s.id for s in lookup_a.sessions] == [s.id for s in lookup_b.sessions] == [lookup_a.sessions[0].id]
    assert wrong.sessions == ()
    # Retiring B's number is refused while the session lives; closing frees both.
    retire = await api.delete(f"/v1/numbers/{x_b.replace('+', '%2B')}")
    assert (retire.status, error_code(await retire.json())) == (409, "number_in_use")
    await api.delete(f"/v1/sessions/{session['id']}")
    listed = {n["number"]: n["live_sessions"] for n in (await (await api.get("/v1/numbers")).json())["numbers"]}
    assert listed[x_a] == listed[x_b] == 0


async def test_shared_stays_the_default_with_one_number(api, store):
    await numbers(store, "+6560003001", "+6560003002")
    session = await create(api)
    assert (session["caller_id_policy"], session["virtual_number_b"]) == ("shared", None)


@pytest.mark.parametrize("extra, status, code, field", [
    ({"caller_id_policy": "both"}, 422, "invalid_field", "caller_id_policy"),
    ({"virtual_number_b": "+6560003002"}, 422, "invalid_field", "virtual_number_b"),
    ({"caller_id_policy": "per_participant", "virtual_number": "+6560003001", "virtual_number_b": "+6560003001"},
     422, "invalid_field", "virtual_number_b"),
    ({"caller_id_policy": "per_participant", "virtual_number_b": "+6560003999"}, 422, "number_unavailable",
     "virtual_number_b"),
    ({"caller_id_policy": "per_participant", "virtual_number_b": "12"}, 422, "invalid_number", "virtual_number_b"),
])
async def test_caller_id_options_that_do_not_fit_are_refused_precisely(api, store, extra, status, code, field):
    await numbers(store, "+6560003001", "+6560003002")
    body = await create(api, status=status, **extra)
    assert (error_code(body), body["error"].get("field")) == (code, field)


async def test_a_pool_with_one_number_free_for_both_answers_pool_exhausted(api, store):
    await numbers(store, "+6560003001")
    body = await create(api, status=409, caller_id_policy="per_participant")
    assert error_code(body) == "pool_exhausted" and body["error"]["total_numbers"] == 1


async def test_explicit_numbers_are_honoured_and_the_other_one_allocated(api, store):
    await numbers(store, "+6560003001", "+6560003002", "+6560003003", reserved=("+6560003003",))
    both = await create(api, caller_id_policy="per_participant", virtual_number="+6560003003",
                        virtual_number_b="+6560003001")
    only_b = await create(api, a="+6591110002", b="+6581110002", caller_id_policy="per_participant",
                          virtual_number_b="+6560003003")
    assert (both["virtual_number"], both["virtual_number_b"]) == ("+6560003003", "+6560003001")
    assert only_b["virtual_number_b"] == "+6560003003" and only_b["virtual_number"] in ("+6560003001", "+6560003002")


async def test_parallel_per_participant_creates_never_double_book_a_holder(api, store):
    await numbers(store, "+6560003001", "+6560003002", "+6560003003", "+6560003004")
    customers = [f"+659113{i:04d}" for i in range(4)]
    drivers = [f"+658113{i:04d}" for i in range(4)]
    requests = [{"participant_a": customers[i % 4], "participant_b": drivers[(i * 3) % 4],
                 "purpose": "delivery_order", "caller_id_policy": "per_participant" if i % 3 else "shared"}
                for i in range(40)]

    responses = await asyncio.gather(*(api.post("/v1/sessions", json=r) for r in requests))

    assert {r.status for r in responses} <= {201, 409}, [r.status for r in responses]
    held = set()
    for resp in responses:
        body = await resp.json()
        if resp.status != 201:
            assert error_code(body) in ("pool_exhausted", "number_in_use")
            continue
        for participant, number in ((body["participant_a"], body["virtual_number"]),
                                    (body["participant_b"], body["virtual_number_b"] or body["virtual_number"])):
            assert (participant, number) not in held, f"double booked {(participant, number)}"
            held.add((participant, number))
    assert sum(r.status == 201 for r in responses) >= 4
    async with store.pool.acquire() as conn:
        rows = await conn.fetch("SELECT virtual_number, number_hash, count(*) FROM session_participants"
                                " WHERE live GROUP BY 1, 2 HAVING count(*) > 1")
    assert rows == []


async def test_an_explicit_number_its_holder_already_holds_live_is_number_in_use(api, store):
    await numbers(store, "+6560003001", "+6560003002", "+6560003003")
    await create(api, caller_id_policy="per_participant", virtual_number="+6560003001",
                 virtual_number_b="+6560003002")

    again = await create(api, a="+6591110002", status=409, caller_id_policy="per_participant",
                         virtual_number="+6560003003", virtual_number_b="+6560003002")

    assert error_code(again) == "number_in_use"


async def test_b_may_hold_a_s_number_with_someone_else_and_each_number_reaches_its_holders_counterpart(api, store):
    a, b, c = "+6591110001", "+6581110001", "+6591110003"
    await numbers(store, "+6560003001", "+6560003002")
    shared = await create(api, a=c, b=b, virtual_number="+6560003001")  # B and C on N1

    mine = await create(api, a=a, b=b, caller_id_policy="per_participant", virtual_number="+6560003001",
                        virtual_number_b="+6560003002")

    def reached(number, caller):
        async def route():
            found = resolve_route(await store.sessions.route_lookup(number, caller), caller, utcnow())
            return (str(found.session.id), found.counterpart, found.caller_id) if isinstance(found, Connect) \
                else found.reason.value
        return route()

    assert await reached("+6560003001", a) == (mine["id"], b, "+6560003002")
    assert await reached("+6560003002", b) == (mine["id"], a, "+6560003001")
    assert await reached("+6560003001", b) == (shared["id"], c, "+6560003001")
    assert await reached("+6560003002", a) == "not_a_participant"


async def test_many_newer_sessions_where_b_does_not_hold_the_number_do_not_hide_b_s_live_one(api, store):
    # A driver B is on N with C; meanwhile customers' per-participant sessions with B give
    # the customers N (B holds M there). The lookup of B dialing N must still find C.
    b, c = "+6581110001", "+6591110003"
    await numbers(store, "+6560003001", "+6560003002")
    shared = await create(api, a=c, b=b, virtual_number="+6560003001")
    for i in range(6):
        other = await create(api, a=f"+659111100{i}", b=b, caller_id_policy="per_participant",
                             virtual_number="+6560003001", virtual_number_b="+6560003002")
        await api.delete(f"/v1/sessions/{other['id']}")

    route = resolve_route(await store.sessions.route_lookup("+6560003001", b), b, utcnow())

    assert isinstance(route, Connect) and str(route.session.id) == shared["id"] and route.counterpart == c
