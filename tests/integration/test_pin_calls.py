"""Shared virtual numbers with a PIN, through real SIPp, Asterisk, service and
PostgreSQL: the caller keys the PIN as RFC 2833 telephone-events in early
media and reaches the counterpart of the session it names, or hears why not."""
from __future__ import annotations

import asyncio
import itertools
import json
import re
import time

from bridge.sessions.models import MaskingSession, SessionRequest
from bridge.store import Store
from tests.integration.conftest import query, wait_for_call_row
from tests.integration.test_masked_call import assert_no_leftovers, number_forms
from tests.support.dtmf import dtmf_pcap, info_messages

_serial = itertools.count(1)


def shared_number(stack, customers: int = 2, ttl: int = 3600,
                  unknown_callers: bool = False) -> tuple[str, str, list[MaskingSession]]:
    """A fresh shared number and one driver with a live session per customer on it
    (named explicitly: other tests' shared numbers live in the same database)."""
    n = next(_serial)
    number, driver = f"+656200{n:04d}", f"+658200{n:04d}"

    async def run():
        store = await Store.connect(stack.dsn, stack.keys)
        try:
            await store.numbers.add(number, pin_mode=True)
            return [(await store.sessions.create(SessionRequest(
                f"+65920{n:03d}{c:02d}", driver, ttl_seconds=ttl, record=False, purpose="delivery_order",
                pin_mode=True, virtual_number=number, pin_unknown_callers=unknown_callers)))[0]
                for c in range(customers)]
        finally:
            await store.close()

    return number, driver, asyncio.run(run())


def key_in(tmp_path, digits: str) -> str:
    (tmp_path / "pcap").mkdir(exist_ok=True)
    name = f"pcap/pin_{digits.replace('#', 'P').replace('*', 'S')}.pcap"
    dtmf_pcap(digits, tmp_path / name)
    return name


def wrong_pins(real: set[str], count: int) -> list[str]:
    candidates = (f"{n:04d}" for n in range(1357, 10000, 1111))
    return [p for p in candidates if p not in real][:count]


def connect_with_pin(place_call, caller: str, number: str, pin: str, tmp_path, talk_ms: int = 2000):
    """A call from `caller` to the shared `number` keying `pin` (RFC 2833) that is answered."""
    return place_call(caller, number, uac="uac_pin.xml", uas="uas_answer.xml", talk_ms=talk_ms,
                      uac_values={"pcap": key_in(tmp_path, pin), "final_status": "200", "final_next": "connected"})


def invite_to(call, callee: str, shown: str | None = None) -> str:
    """The INVITE the counterpart got: for `callee`, and, given `shown`, from that number only."""
    invite = next(m for m in call.counterpart.received() if m.startswith("INVITE"))
    assert re.search(r"^To: <sip:" + re.escape(callee) + "@", invite, re.M), invite
    if shown:
        assert re.search(r"^From: .*<sip:" + re.escape(shown) + "@", invite, re.M), invite
    return invite


def test_the_pin_not_the_callers_number_picks_the_session(stack, place_call, tmp_path):
    number, driver, sessions = shared_number(stack, customers=2)
    first, second = sessions
    assert first.virtual_number == second.virtual_number == number and first.pin != second.pin

    # The driver holds both sessions on this number; the PIN says which customer.
    call = connect_with_pin(place_call, driver, number, first.pin, tmp_path)

    assert call.caller.succeeded, call.caller.output
    assert call.counterpart.succeeded, call.counterpart.output
    invite_to(call, first.participant_a, shown=number)
    everything = "\n".join(call.counterpart.received())
    for form in number_forms(driver) + [first.pin]:
        assert form not in everything, "the caller's number or the PIN reached the counterpart"
    # Before the PIN, the caller heard the request (early media, not answered).
    assert call.caller_rtp.packets > 50

    row = wait_for_call_row(stack, number)
    assert row["disposition"] == "answered" and row["session_id"] == first.id and row["direction"] == "b_to_a"
    assert row["answered_at"] is not None and row["reject_reason"] is None and row["pin_attempts"] == 1
    assert_no_leftovers(stack)


def test_a_customer_keys_the_pin_and_reaches_the_driver(stack, place_call, tmp_path):
    number, driver, (session, _) = shared_number(stack)

    call = connect_with_pin(place_call, session.participant_a, number, session.pin, tmp_path)

    assert call.caller.succeeded and call.counterpart.succeeded, call.caller.output
    invite_to(call, driver, shown=number)
    row = wait_for_call_row(stack, number)
    assert row["disposition"] == "answered" and row["session_id"] == session.id and row["direction"] == "a_to_b"
    assert_no_leftovers(stack)


def test_three_wrong_pins_end_the_call_with_a_prompt_and_nobody_is_dialed(stack, place_call, tmp_path):
    number, driver, sessions = shared_number(stack)
    wrong = wrong_pins({s.pin for s in sessions}, 3)

    call = place_call(sessions[0].participant_a, number, uac="uac_pin.xml",
                      uac_values={"pcap": key_in(tmp_path, "".join(wrong)), "final_status": "403",
                                  "final_next": "rejected"})

    assert call.caller.succeeded, call.caller.output  # released with 403 Forbidden
    # Prompts all along: the request, "wrong" twice, and the closing one.
    assert call.caller_rtp.packets > 150 and call.caller_rtp.level > 100
    assert not any(m.startswith("SIP/2.0 200") for m in call.caller.received())
    row = wait_for_call_row(stack, number)
    assert row["disposition"] == "rejected" and row["reject_reason"] == "invalid_pin"
    assert row["session_id"] is None and row["callee_channel_id"] is None and row["hangup_by"] == "system"
    assert row["caller_hangup_cause"] == 21 and row["pin_attempts"] == 3
    assert_no_leftovers(stack)


def test_the_pin_of_an_expired_session_hears_the_session_ended(stack, place_call, tmp_path):
    number, driver, (session,) = shared_number(stack, customers=1, ttl=1)
    time.sleep(1.5)

    call = place_call(session.participant_a, number, uac="uac_pin.xml",
                      uac_values={"pcap": key_in(tmp_path, session.pin), "final_status": "410",
                                  "final_next": "rejected"})

    assert call.caller.succeeded, call.caller.output  # 410 Gone, after the session-ended prompt
    assert call.caller_rtp.packets > 50
    row = wait_for_call_row(stack, number)
    assert row["disposition"] == "rejected" and row["reject_reason"] == "session_expired"
    assert row["session_id"] == session.id and row["callee_channel_id"] is None and row["pin_attempts"] == 1
    assert query(stack.dsn, "SELECT count(*) AS n FROM calls WHERE virtual_number = $1", number)[0]["n"] == 1
    assert_no_leftovers(stack)


def test_a_pin_keyed_as_sip_info_connects_too(stack, place_call):
    number, driver, (session, _) = shared_number(stack)

    call = place_call(session.participant_a, number, uac="uac_pin_info.xml", uas="uas_answer.xml", talk_ms=2000,
                      uac_values={"infos": info_messages(session.pin), "final_status": "200",
                                  "final_next": "connected"})

    assert call.caller.succeeded, call.caller.output
    assert call.counterpart.succeeded, call.counterpart.output
    invite_to(call, driver)
    row = wait_for_call_row(stack, number)
    assert row["disposition"] == "answered" and row["session_id"] == session.id
    assert_no_leftovers(stack)


def test_a_silent_caller_is_asked_again_then_released_never_left_in_dead_air(stack, place_call):
    number, driver, sessions = shared_number(stack, customers=1)

    call = place_call(sessions[0].participant_a, number, uac="uac_rejected.xml", uac_values={"final_status": "403"},
                      timeout=90)

    # Released with 403 after the digit timeouts (SIPp gives up at 90 s: a hung call fails here).
    assert call.caller.succeeded, call.caller.output
    # The request three times and the closing prompt: seconds of audio, not silence.
    assert call.caller_rtp.packets > 250 and call.caller_rtp.level > 100
    row = wait_for_call_row(stack, number)
    assert row["disposition"] == "rejected" and row["reject_reason"] == "invalid_pin" and row["pin_attempts"] == 3
    assert row["callee_channel_id"] is None
    assert_no_leftovers(stack)


def test_a_session_open_to_unknown_callers_connects_anyone_with_its_pin_to_the_driver(stack, place_call, tmp_path):
    number, driver, (session,) = shared_number(stack, customers=1, unknown_callers=True)
    stranger = "+6597770001"  # the customer, calling from a phone the session does not know

    call = connect_with_pin(place_call, stranger, number, session.pin, tmp_path)

    assert call.caller.succeeded and call.counterpart.succeeded, call.caller.output
    invite_to(call, driver, shown=number)
    assert not any(form in "\n".join(call.counterpart.received()) for form in number_forms(stranger))
    row = wait_for_call_row(stack, number)
    assert row["disposition"] == "answered" and row["session_id"] == session.id and row["direction"] == "a_to_b"
    assert_no_leftovers(stack)


def test_a_stranger_with_a_valid_pin_is_told_it_is_wrong(stack, place_call, tmp_path):
    number, driver, (session,) = shared_number(stack, customers=1)

    call = place_call("+6597770002", number, uac="uac_pin.xml",
                      uac_values={"pcap": key_in(tmp_path, session.pin * 3), "final_status": "403",
                                  "final_next": "rejected"})

    assert call.caller.succeeded, call.caller.output
    row = wait_for_call_row(stack, number)
    assert row["reject_reason"] == "invalid_pin" and row["session_id"] is None and row["callee_channel_id"] is None
    assert_no_leftovers(stack)


def test_a_recorded_session_on_a_shared_number_plays_the_notice_after_the_pin_and_records(stack, place_call,
                                                                                          tmp_path):
    n = next(_serial)
    number, driver, customer = f"+656200{n:04d}", f"+658200{n:04d}", f"+659200{n:04d}"

    async def create():
        store = await Store.connect(stack.dsn, stack.keys)
        try:
            await store.numbers.add(number, pin_mode=True)
            return (await store.sessions.create(SessionRequest(customer, driver, ttl_seconds=600, record=True,
                                                              purpose="delivery_order", virtual_number=number)))[0]
        finally:
            await store.close()

    session = asyncio.run(create())
    call = connect_with_pin(place_call, customer, number, session.pin, tmp_path, talk_ms=3000)

    assert call.caller.succeeded and call.counterpart.succeeded, call.caller.output
    row = wait_for_call_row(stack, number, with_recording=True)
    assert row["disposition"] == "answered" and row["recorded"] and row["recording"]["bytes"] > 8000
    assert [n["party"] for n in json.loads(row["notices"])] == ["caller", "callee"]
    assert_no_leftovers(stack)
