"""Click-to-call and call time limits through real SIPp, Asterisk, service and PostgreSQL.

Both parties of a click-to-call are dialed on the one outbound trunk, so one
SIPp (`-m 2`) plays both; its scenario tells them apart by the To header.
What counts is what reached them: the INVITEs and their headers, the audio,
the BYEs, and the order of it all. No duration is asserted.
"""
from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from itertools import count

import pytest

from bridge.webhooks import verify
from tests.integration.conftest import new_parties, query, wait_for_call_row
from tests.integration.test_api_call import Receiver, api_token, call_api  # noqa: F401 (fixture)
from tests.integration.test_faults import bridged, kill_service, restore_service, wait_until  # noqa: F401
from tests.integration.test_masked_call import assert_no_leftovers, number_forms, recording_level
from tests.integration.test_wait_audio import TONE_HZ, tone_wav, upload
from tests.support.rtp import RtpSniffer
from tests.support.sipp import SipMessage, Sipp, SippResult, render

_serial = count(1)


def live_session(stack, token: str, **extra) -> tuple[dict, str, str]:
    """A fresh pool number and a session on it over the API; returns (session, a, b)."""
    n = next(_serial)
    virtual, a, b = f"+656500{n:04d}", f"+659500{n:04d}", f"+658500{n:04d}"
    assert call_api(stack, token, "POST", "/v1/numbers", {"number": virtual})[0] == 201
    status, body = call_api(stack, token, "POST", "/v1/sessions",
                            {"participant_a": a, "participant_b": b, "virtual_number": virtual,
                             "purpose": "delivery_order", **extra})
    assert status == 201, body
    return json.loads(body), a, b


def place(stack, token: str, session_id: str, **body) -> tuple[int, str | None, dict]:
    """POST /v1/sessions/{id}/calls; returns (status, Location, body)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.settings.http_port}/v1/sessions/{session_id}/calls", method="POST",
        data=json.dumps(body).encode(), headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.headers.get("Location"), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None, json.loads(exc.read())


def parties_sipp(stack, tmp_path, scenario: str, talk_ms: int = 2000, **values) -> Sipp:
    """One SIPp on the outbound trunk's port answering for both participants
    (after ringing `ring_ms`, 300 unless given)."""
    scenario_path = render(scenario, tmp_path, **{"ring_ms": 300, **values})
    sipp = Sipp(tmp_path, scenario_path, ["-m", "2", "-d", str(talk_ms)], "parties", port=stack.counterpart_port)
    sipp.start()
    time.sleep(0.2)  # SIPp binds its port
    return sipp


def dialogs(result: SippResult) -> list[list[SipMessage]]:
    """The messages of each call SIPp took part in, in the order the calls began."""
    calls: dict[str, list[SipMessage]] = {}
    for message in result.log():
        calls.setdefault(message.call_id, []).append(message)
    return list(calls.values())


def first(messages: list[SipMessage], start: str, received: bool = True) -> SipMessage:
    return next(m for m in messages if m.received == received and m.text.startswith(start))


def invited(dialog: list[SipMessage]) -> str:
    """Whom the INVITE of a dialog was for (its To user)."""
    return re.search(r"^To: <sip:([^@]+)@", first(dialog, "INVITE").text, re.M).group(1)


def assert_sees_only_the_virtual_number(dialog: list[SipMessage], virtual_number: str, other: str) -> None:
    received = [m.text for m in dialog if m.received]
    invite = first(dialog, "INVITE").text
    assert re.search(r"^From: .*<sip:" + re.escape(virtual_number) + "@", invite, re.M), invite
    assert re.search(r"^P-Asserted-Identity: .*<sip:" + re.escape(virtual_number) + "@", invite, re.M), invite
    everything = "\n".join(received)
    for form in number_forms(other):
        assert form not in everything, "the other party's number reached this one"
    assert not re.search(r"^(Remote-Party-ID|Diversion):", everything, re.M | re.I)


def test_click_to_call_rings_the_first_party_then_the_second_who_both_see_only_the_virtual_number(
        stack, api_token, tmp_path):
    receiver = Receiver()
    session, a, b = live_session(stack, api_token, webhook_url=receiver.url)
    parties = parties_sipp(stack, tmp_path, "uas_connect.xml", second=b.lstrip("+"))

    status, location, placed = place(stack, api_token, session["id"], **{"from": "a", "custom_field": "ticket-42"})
    assert status == 202, placed
    result = parties.wait(60)

    assert result.succeeded, result.output
    first_call, second_call = dialogs(result)
    assert (invited(first_call), invited(second_call)) == (a, b), "the first party is not called first"
    assert first(second_call, "INVITE").at > first(first_call, "ACK").at, "the second was dialed before the first answered"
    assert_sees_only_the_virtual_number(first_call, session["virtual_number"], other=b)
    assert_sees_only_the_virtual_number(second_call, session["virtual_number"], other=a)
    assert first(first_call, "BYE").at > first(second_call, "BYE", received=False).at, "the first was not released"

    row = wait_for_call_row(stack, session["virtual_number"], with_recording=True)
    assert str(row["id"]) == placed["call_id"] and location == f"/v1/calls/{placed['call_id']}"
    assert (row["kind"], row["disposition"], row["direction"], row["hangup_by"], row["custom_field"]) == \
        ("connect", "answered", "a_to_b", "callee", "ticket-42")
    assert row["started_at"] < row["caller_answered_at"] < row["ringing_at"] < row["answered_at"] < row["ended_at"]
    assert recording_level(stack, row["recording"])[1] > 200, "the recording carries no conversation"
    status, body = call_api(stack, api_token, "GET", location)
    assert status == 200 and json.loads(body)["kind"] == "connect"

    completed = receiver.wait_for("call.completed")
    types = [e["type"] for e in receiver.events()]
    assert types.index("call.ringing") < types.index("call.answered") < types.index("call.completed")
    assert completed["data"]["custom_field"] == "ticket-42"
    assert completed["data"]["kind"] == "connect" and completed["data"]["recording_id"]
    for headers, body in receiver.requests:
        assert verify(stack.settings.webhook_secret, headers["X-Masking-Timestamp"], body, headers["X-Masking-Signature"])
        for number in (a, b):
            assert number.lstrip("+").encode() not in body, "a participant's number reached a webhook body"
    assert_no_leftovers(stack)


@pytest.mark.parametrize("ring_timeouts", [
    {"ring_timeout_seconds": 2},
    # Only the first leg's own timeout is short: had another applied, the call
    # would still be ringing when wait_for_call_row gives up.
    {"ring_timeout_seconds": 300, "first_ring_timeout_seconds": 2, "second_ring_timeout_seconds": 300},
], ids=["shared", "first_leg"])
def test_a_first_party_who_does_not_answer_means_nobody_else_is_called(stack, api_token, tmp_path, ring_timeouts):
    session, a, b = live_session(stack, api_token)
    parties = parties_sipp(stack, tmp_path, "uas_ring.xml")

    status, _, placed = place(stack, api_token, session["id"], **{"from": "b", **ring_timeouts})
    assert status == 202, placed
    row = wait_for_call_row(stack, session["virtual_number"])
    result = parties.wait(1)  # still waiting for a second call that must not come

    calls = dialogs(result)
    assert [invited(dialog) for dialog in calls] == [b], "someone else was called"
    assert any(m.text.startswith("CANCEL") for m in calls[0] if m.received), "the first party's ringing went on"
    assert (row["disposition"], row["direction"], row["kind"]) == ("no_answer", "b_to_a", "connect")
    assert row["caller_answered_at"] is None and row["callee_channel_id"] is None and row["answered_at"] is None
    assert_no_leftovers(stack)


def test_a_busy_first_party_means_nobody_else_is_called(stack, api_token, tmp_path):
    session, a, b = live_session(stack, api_token)
    parties = parties_sipp(stack, tmp_path, "uas_status.xml", status=486, reason="Busy Here", tag="first-busy")

    assert place(stack, api_token, session["id"], **{"from": "a"})[0] == 202
    row = wait_for_call_row(stack, session["virtual_number"])
    result = parties.wait(1)

    assert [invited(dialog) for dialog in dialogs(result)] == [a], "someone else was called"
    assert row["disposition"] == "busy" and row["callee_channel_id"] is None and row["caller_answered_at"] is None
    assert_no_leftovers(stack)


def test_a_busy_second_party_gives_the_first_the_busy_prompt_and_a_hangup(stack, api_token, tmp_path):
    session, a, b = live_session(stack, api_token)
    parties = parties_sipp(stack, tmp_path, "uas_connect_second_refuses.xml", second=b.lstrip("+"), status=486,
                           reason="Busy Here", tag="second-busy")

    with RtpSniffer(parties.media_port) as rtp:
        assert place(stack, api_token, session["id"], **{"from": "a"})[0] == 202
        result = parties.wait(60)

    assert result.succeeded, result.output
    first_call, second_call = dialogs(result)
    busy_sent = first(second_call, "SIP/2.0 486", received=False).at
    released = first(first_call, "BYE").at
    assert any(busy_sent < heard < released for heard in rtp.arrivals), "the first party heard no prompt"
    row = wait_for_call_row(stack, session["virtual_number"])
    assert (row["disposition"], row["hangup_by"]) == ("busy", "system")
    assert row["caller_answered_at"] is not None and row["answered_at"] is None
    assert_no_leftovers(stack)


def test_the_first_party_hears_the_sessions_wait_audio_while_the_second_rings(stack, api_token, tmp_path):
    status, audio = upload(stack, api_token, tone_wav(3.0))
    assert status == 201, audio
    session, a, b = live_session(stack, api_token, record=False, wait_audio_id=audio["id"])
    # Both parties ring 2 s, shorter than the clip; the second answers and plays
    # audio only after: what the first hears while the second rings is ours.
    parties = parties_sipp(stack, tmp_path, "uas_connect.xml", second=b.lstrip("+"), ring_ms=2000, tag="wait-audio")

    with RtpSniffer(parties.media_port) as rtp:
        assert place(stack, api_token, session["id"], **{"from": "a"})[0] == 202
        result = parties.wait(60)

    assert result.succeeded, result.output
    first_call, second_call = dialogs(result)
    assert (invited(first_call), invited(second_call)) == (a, b)
    ringing = (first(second_call, "INVITE").at, first(second_call, "SIP/2.0 200", received=False).at)
    assert rtp.audio_between(*ringing) > 50, "the first party heard nothing while the second rang"
    assert abs(rtp.pitch(between=ringing) - 2 * TONE_HZ) < 150, "the first party heard something else than the upload"
    row = wait_for_call_row(stack, session["virtual_number"])
    assert (row["kind"], row["disposition"]) == ("connect", "answered")
    assert_no_leftovers(stack)


def test_a_bad_connect_request_gets_a_precise_error_and_calls_nobody(stack, api_token):
    session, a, b = live_session(stack, api_token)
    closed, _, _ = live_session(stack, api_token)
    call_api(stack, api_token, "DELETE", f"/v1/sessions/{closed['id']}")

    assert place(stack, api_token, session["id"], **{"from": "c"})[2]["error"]["field"] == "from"
    assert place(stack, api_token, session["id"], **{"from": "a", "custom_field": "x" * 257})[0] == 422
    assert place(stack, api_token, session["id"], **{"from": "a", "second_ring_timeout_seconds": 0})[2]["error"] == \
        {"code": "invalid_field", "field": "second_ring_timeout_seconds",
         "message": "second_ring_timeout_seconds must be between 1 and 300"}
    assert place(stack, api_token, closed["id"], **{"from": "a"})[2]["error"]["code"] == "session_not_active"
    assert place(stack, api_token, "00000000-0000-0000-0000-000000000000", **{"from": "a"})[0] == 404
    assert query(stack.dsn, "SELECT id FROM calls WHERE session_id = ANY($1::uuid[])",
                 [session["id"], closed["id"]]) == []


# -- time limits -------------------------------------------------------------------------
def test_a_time_limit_warns_both_parties_then_ends_an_answered_call(stack, place_call):
    parties = new_parties(stack, time_limit=4)  # the warning comes at 2 s

    # Neither party sends audio: what reaches them is the bridge's own beep.
    call = place_call(parties.a, parties.virtual_number, uac="uac_until_bye.xml", uas="uas_answer.xml",
                      uas_args=(), timeout=60)

    assert call.caller.succeeded, "the caller got no BYE: " + call.caller.output
    assert call.counterpart.succeeded, "the counterpart got no BYE: " + call.counterpart.output
    for result, rtp in ((call.caller, call.caller_rtp), (call.counterpart, call.counterpart_rtp)):
        released = first(result.log(), "BYE").at
        assert rtp.level > 100 and rtp.arrivals[0] < released, "a party heard no warning before the end"
    row = wait_for_call_row(stack, parties.virtual_number, with_recording=True)
    assert (row["disposition"], row["hangup_by"], row["time_limit_seconds"]) == ("time_limit", "system", 4)
    assert (row["caller_hangup_cause"], row["callee_hangup_cause"]) == (16, 16), "not a normal clearing"
    assert row["recording"] is not None
    assert_no_leftovers(stack)


def test_a_bridged_click_to_call_outlives_a_killed_service_and_the_next_one_keeps_its_time_limit(
        stack, api_token, tmp_path, restore_service):
    session, a, b = live_session(stack, api_token)
    parties = parties_sipp(stack, tmp_path, "uas_connect.xml", talk_ms=60000, second=b.lstrip("+"), tag="killed")

    assert place(stack, api_token, session["id"], **{"from": "a", "time_limit_seconds": 8})[0] == 202
    wait_until(lambda: bridged(stack))
    kill_service(stack)
    stack.start_service()
    result = parties.wait(60)

    # The second party's scenario meant to hang up itself: the limit's BYE comes first.
    assert all(any(m.received and m.text.startswith("BYE") for m in dialog) for dialog in dialogs(result)), \
        "a party was not released"
    row = wait_for_call_row(stack, session["virtual_number"], with_recording=True)
    assert (row["kind"], row["disposition"], row["time_limit_seconds"]) == ("connect", "time_limit", 8)
    assert any('"call.adopted"' in line and str(row["id"]) in line
               for line in stack.service_log.read_text().splitlines()), "not adopted by the next process"
    assert_no_leftovers(stack)
