"""No half-open calls: a party that vanishes mid-call (its SIPp killed with
SIGKILL: no BYE, no more RTP) is noticed, the other party is released, and the
call's row is finished; and no call outlives MASKING_MAX_CALL_SECONDS.

The stack runs the default trunks with a 2 s RTP timeout (MASKING_RTP_TIMEOUT),
so a dead far end shows within seconds rather than the minute a deployment uses.
"""
from __future__ import annotations

import time
from datetime import datetime

import pytest

from tests.integration.conftest import new_parties, wait_for_call_row
from tests.support.sipp import Sipp, render
from tests.support.stack import Stack, running_stack

RTP_TIMEOUT = 2
# Asterisk checks RTP inactivity about once per timeout period: a dead party
# is noticed between one and two periods after its last packet.
NOTICED_WITHIN = 2 * RTP_TIMEOUT + 3
CAUSE_RTP_TIMEOUT = 44  # what chan_pjsip gives a leg it drops for lack of RTP


@pytest.fixture(scope="module")
def half_open_stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("half-open"), MASKING_RTP_TIMEOUT=str(RTP_TIMEOUT)) as stack:
        yield stack


def start_call(stack: Stack, tmp_path, uas: str, uas_args: list[str]) -> tuple[Sipp, Sipp, str]:
    """A caller that talks and never hangs up, connected to a counterpart; returns once they are bridged."""
    parties = new_parties(stack, record=False)
    counterpart = Sipp(tmp_path, render(uas, tmp_path), [*uas_args, "-d", "60000"], "counterpart",
                       port=stack.counterpart_port).start()
    time.sleep(0.2)  # SIPp binds its port
    caller = Sipp(tmp_path, render("uac_talk_until_bye.xml", tmp_path),
                  ["-s", parties.virtual_number, "-key", "caller", parties.a, stack.sip_target], "caller").start()
    deadline = time.monotonic() + 20
    while not stack.ari("GET", "/bridges"):
        assert time.monotonic() < deadline, "the call was never bridged"
        assert caller.process.poll() is None, "the caller's call ended before it was bridged"
        time.sleep(0.1)
    return caller, counterpart, parties.virtual_number


def released_at(result) -> datetime:
    """When this party received the bridge's BYE."""
    return next(m.at for m in result.log() if m.received and m.text.startswith("BYE"))


def assert_no_leftovers(stack: Stack) -> None:
    channels, bridges = stack.leftovers()
    assert channels == [] and bridges == [], f"leaked: {channels} {bridges}"


def test_a_counterpart_that_vanishes_mid_call_is_noticed_and_the_caller_released(half_open_stack, tmp_path):
    stack = half_open_stack
    caller, counterpart, virtual_number = start_call(stack, tmp_path, "uas_answer.xml", ["-rtp_echo"])
    time.sleep(1)  # talking
    counterpart.process.kill()  # SIGKILL: no BYE, no more RTP, nothing
    killed = datetime.now()
    try:
        result = caller.wait(NOTICED_WITHIN + 10)
    finally:
        caller.stop()
        counterpart.stop()

    assert result.succeeded, "the caller got no BYE: " + result.output
    assert (released_at(result) - killed).total_seconds() < NOTICED_WITHIN
    row = wait_for_call_row(stack, virtual_number)
    assert (row["disposition"], row["hangup_by"]) == ("answered", "callee")
    assert row["callee_hangup_cause"] == CAUSE_RTP_TIMEOUT
    assert row["ended_at"] is not None and row["talk_seconds"] < 1 + NOTICED_WITHIN + 1
    assert_no_leftovers(stack)


def test_a_caller_that_vanishes_mid_call_is_noticed_and_the_counterpart_released(half_open_stack, tmp_path):
    stack = half_open_stack
    # This counterpart talks on its own (7 s of audio), so only the caller's side goes quiet.
    caller, counterpart, virtual_number = start_call(stack, tmp_path, "uas_answer_talking.xml", [])
    time.sleep(1)
    caller.process.kill()
    killed = datetime.now()
    try:
        result = counterpart.wait(NOTICED_WITHIN + 10)
    finally:
        caller.stop()
        counterpart.stop()

    assert result.succeeded, "the counterpart got no BYE: " + result.output
    assert (released_at(result) - killed).total_seconds() < NOTICED_WITHIN
    row = wait_for_call_row(stack, virtual_number)
    assert (row["disposition"], row["hangup_by"]) == ("answered", "caller")
    assert row["caller_hangup_cause"] == CAUSE_RTP_TIMEOUT and row["ended_at"] is not None
    assert_no_leftovers(stack)


def test_no_call_outlives_the_maximum_call_duration(half_open_stack, tmp_path):
    stack = half_open_stack
    stack.stop_service()
    stack.start_service(MASKING_MAX_CALL_SECONDS="4")
    try:
        caller, counterpart, virtual_number = start_call(stack, tmp_path, "uas_answer.xml", ["-rtp_echo"])
        try:
            caller_result, counterpart_result = caller.wait(20), counterpart.wait(10)
        finally:
            caller.stop()
            counterpart.stop()
    finally:
        stack.stop_service()
        stack.start_service()

    assert caller_result.succeeded and counterpart_result.succeeded, "a party was not released"
    row = wait_for_call_row(stack, virtual_number)
    assert (row["disposition"], row["hangup_by"]) == ("time_limit", "system")
    assert row["time_limit_seconds"] is None, "the session had no limit of its own"
    assert 3.5 < row["talk_seconds"] < 4 + NOTICED_WITHIN
    assert_no_leftovers(stack)


def test_no_call_outlives_the_maximum_call_duration_on_the_fastagi_fallback_either(half_open_stack, tmp_path):
    import os
    import subprocess
    import sys

    from tests.integration.test_faults import wait_until
    from tests.support.stack import REPO

    stack = half_open_stack
    stack.stop_service()  # the Stasis app gone: the dialplan takes the fallback
    log_path = tmp_path / "agi.log"
    with open(log_path, "wb") as log:
        agi = subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve-agi"], cwd=REPO, stdout=log,
                               stderr=subprocess.STDOUT,
                               env={**os.environ, **stack.env, "MASKING_MAX_CALL_SECONDS": "4"})
    try:
        wait_until(lambda: '"agi.listening"' in log_path.read_text())
        parties = new_parties(stack, record=False)
        counterpart = Sipp(tmp_path, render("uas_answer.xml", tmp_path), ["-rtp_echo", "-d", "60000"], "counterpart",
                           port=stack.counterpart_port).start()
        time.sleep(0.2)
        caller = Sipp(tmp_path, render("uac_talk_until_bye.xml", tmp_path),
                      ["-s", parties.virtual_number, "-key", "caller", parties.a, stack.sip_target], "caller").start()
        try:
            caller_result, counterpart_result = caller.wait(30), counterpart.wait(10)
        finally:
            caller.stop()
            counterpart.stop()
        row = wait_for_call_row(stack, parties.virtual_number)
    finally:
        agi.terminate()
        agi.wait(timeout=20)
        stack.start_service()

    assert caller_result.succeeded and counterpart_result.succeeded, "a party was not released"
    assert row["path"] == "agi" and (row["disposition"], row["hangup_by"]) == ("time_limit", "system")
    assert 3 <= row["talk_seconds"] <= 5
    assert_no_leftovers(stack)
