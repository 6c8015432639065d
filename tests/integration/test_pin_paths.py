"""Shared (PIN) numbers on both paths a call can take: the ARI application
and the FastAGI fallback that serves calls while the application is down.
The same calls, keying RFC 2833 digits in early media, must meet the same
rules and hear the same prompts on each: asked for the PIN, told a wrong one
is wrong and asked again, released after the last attempt with the closing
prompt and 403, told a session has ended (410), connected by the right one.

Each prompt is a pure tone of its own here (tests/integration/test_endings.py
installs them), so what the caller heard is read from the pitch of the RTP
that reached it, not from our logs."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime

import pytest

from bridge.recordings.wait_audio import sounds_dir
from tests.integration.conftest import wait_for_call_row
from tests.integration.test_endings import TONES, install_prompts
from tests.integration.test_faults import wait_until
from tests.integration.test_masked_call import assert_no_leftovers
from tests.integration.test_pin_calls import connect_with_pin, invite_to, key_in, shared_number, wrong_pins
from tests.support.stack import REPO


@pytest.fixture(scope="module", params=["ari", "agi"])
def path(request, stack, tmp_path_factory):
    """The stack with the tone prompts, its calls carried by the ARI
    application or, with the service stopped, by `masking serve-agi`."""
    overrides = {**install_prompts(sounds_dir(stack.settings) / "endings"), "MASKING_PIN_DIGIT_TIMEOUT": "1"}
    stack.stop_service()
    agi = None
    if request.param == "ari":
        stack.start_service(**overrides)
    else:
        log_path = tmp_path_factory.mktemp("agi") / "agi.log"
        with open(log_path, "wb") as log:
            agi = subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve-agi"], cwd=REPO, stdout=log,
                                   stderr=subprocess.STDOUT, env={**os.environ, **stack.env, **overrides})
        wait_until(lambda: '"agi.listening"' in log_path.read_text())
    yield request.param
    if agi is not None:
        agi.terminate()
        agi.wait(timeout=20)
    stack.stop_service()
    stack.start_service()


def heard(call, prompt: str, until: datetime) -> int:
    """Packets of `prompt`'s tone the caller received before `until`."""
    return call.caller_rtp.tone_packets(TONES[prompt], between=(datetime.min, until))


def assert_row(stack, number: str, path: str, **expected) -> dict:
    row = wait_for_call_row(stack, number)
    assert row["path"] == path
    assert {name: row[name] for name in expected} == expected
    return row


def test_the_right_pin_reaches_the_counterpart_of_the_session_it_names(path, stack, place_call, tmp_path):
    number, driver, (first, second) = shared_number(stack, customers=2)

    call = connect_with_pin(place_call, driver, number, first.pin, tmp_path)

    assert call.caller.succeeded and call.counterpart.succeeded, call.caller.output
    invite_to(call, first.participant_a, shown=number)
    # The first digit cuts the request short (SIPp keys it at once).
    assert heard(call, "PIN_REQUEST", until=call.caller.first("received", "SIP/2.0 200")) > 3, \
        "the caller was not asked for the PIN"
    assert_row(stack, number, path, disposition="answered", session_id=first.id, direction="b_to_a", pin_attempts=1)
    assert_no_leftovers(stack)


def test_a_wrong_pin_is_said_to_be_wrong_and_asked_again_and_the_right_one_then_connects(
        path, stack, place_call, tmp_path):
    number, driver, (session,) = shared_number(stack, customers=1)
    wrong = wrong_pins({session.pin}, 1)[0]

    call = place_call(session.participant_a, number, uac="uac_pin.xml", uas="uas_answer.xml", talk_ms=1000,
                      uac_values={"pcap": key_in(tmp_path, wrong + session.pin), "final_status": "200",
                                  "final_next": "connected"})

    assert call.caller.succeeded and call.counterpart.succeeded, call.caller.output
    invite_to(call, driver, shown=number)
    assert heard(call, "PIN_INVALID", until=call.caller.first("received", "SIP/2.0 200")) > 10, \
        "the caller was not told the PIN was wrong"
    assert_row(stack, number, path, disposition="answered", session_id=session.id, pin_attempts=2)
    assert_no_leftovers(stack)


def test_three_wrong_pins_end_with_the_closing_prompt_and_403_and_nobody_is_dialed(
        path, stack, place_call, tmp_path):
    number, driver, sessions = shared_number(stack)
    wrong = wrong_pins({s.pin for s in sessions}, 3)

    call = place_call(sessions[0].participant_a, number, uac="uac_pin.xml",
                      uac_values={"pcap": key_in(tmp_path, "".join(wrong)), "final_status": "403",
                                  "final_next": "rejected"})

    assert call.caller.succeeded, call.caller.output  # released with 403 Forbidden
    rejected = call.caller.first("received", "SIP/2.0 403")
    assert heard(call, "PIN_INVALID", until=rejected) > 10 and heard(call, "PIN_FAILED", until=rejected) > 35
    assert not any(m.startswith("SIP/2.0 200") for m in call.caller.received())
    assert_row(stack, number, path, disposition="rejected", reject_reason="invalid_pin", session_id=None,
               callee_channel_id=None, pin_attempts=3)
    assert_no_leftovers(stack)


def test_a_silent_caller_is_asked_again_then_released_never_left_in_dead_air(path, stack, place_call):
    number, driver, (session,) = shared_number(stack, customers=1)

    call = place_call(session.participant_a, number, uac="uac_rejected.xml", uac_values={"final_status": "403"},
                      timeout=40)

    assert call.caller.succeeded, call.caller.output
    rejected = call.caller.first("received", "SIP/2.0 403")
    assert heard(call, "PIN_REQUEST", until=rejected) > 3 * 15, "not asked three times"
    assert heard(call, "PIN_FAILED", until=rejected) > 35, "no closing prompt"
    assert_row(stack, number, path, disposition="rejected", reject_reason="invalid_pin", pin_attempts=3)
    assert_no_leftovers(stack)


def test_the_pin_of_an_expired_session_hears_the_session_ended_and_410(path, stack, place_call, tmp_path):
    number, driver, (session,) = shared_number(stack, customers=1, ttl=1)
    time.sleep(1.5)

    call = place_call(session.participant_a, number, uac="uac_pin.xml",
                      uac_values={"pcap": key_in(tmp_path, session.pin), "final_status": "410",
                                  "final_next": "rejected"})

    assert call.caller.succeeded, call.caller.output
    assert heard(call, "SESSION_ENDED", until=call.caller.first("received", "SIP/2.0 410")) > 35
    assert_row(stack, number, path, disposition="rejected", reject_reason="session_expired", session_id=session.id,
               pin_attempts=1)
    assert_no_leftovers(stack)
