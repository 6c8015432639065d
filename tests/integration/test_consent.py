"""The recording notice on real calls: both parties hear it before they hear
each other, recording starts only after, and pressing 9 turns it off.

These run on a stack of their own with the real notice (the shared stack
plays a short beep as its notice to keep the suite fast).
"""
from __future__ import annotations

import json

import pytest

from tests.integration.conftest import new_parties, wait_for_call_row
from tests.support.stack import running_stack

PRESS_9 = '<action><exec play_pcap_audio="pcap/dtmf_2833_9.pcap"/></action>'
TALK_MS = 3000


@pytest.fixture(scope="module")
def notice_stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("notice-stack"), MASKING_NOTICE_SOUND="") as stack:
        yield stack


def call(place_call, stack, parties, during_notice="", after_answer=""):
    return place_call(parties.a, parties.virtual_number, via=stack, uac="uac_notice.xml", uas="uas_notice.xml",
                      uac_values={"during_notice": during_notice}, uas_values={"after_answer": after_answer},
                      talk_ms=TALK_MS, timeout=60)


def test_both_parties_hear_the_notice_before_they_hear_each_other_and_recording_starts_after(
        notice_stack, place_call):
    parties = new_parties(notice_stack)

    result = call(place_call, notice_stack, parties)

    assert result.caller.succeeded, result.caller.output
    assert result.counterpart.succeeded, result.counterpart.output
    caller_connected = result.caller.first("received", "SIP/2.0 200")
    early_media = result.caller.first("received", "SIP/2.0 183")
    counterpart_answered = result.counterpart.first("sent", "SIP/2.0 200")
    # The caller heard speech in early media, before being connected...
    assert result.caller_rtp.audio_between(early_media, caller_connected) > 50, "caller heard no notice"
    # ...and the counterpart heard it after answering, still before the caller was connected.
    assert counterpart_answered < caller_connected
    assert result.counterpart_rtp.audio_between(counterpart_answered, caller_connected) > 50, \
        "counterpart heard no notice before the bridge"

    row = wait_for_call_row(notice_stack, parties.virtual_number, with_recording=True)
    assert row["disposition"] == "answered" and row["recorded"] and row["recording_opt_out"] is None
    notices = json.loads(row["notices"]) if isinstance(row["notices"], str) else row["notices"]
    assert [(n["party"], n["notice_id"], n["version"], n["completed"], n["opted_out"]) for n in notices] == \
        [("caller", "recording-notice", "1", True, False), ("callee", "recording-notice", "1", True, False)]
    last_notice_end = max(n["ended_at"] for n in notices)
    assert row["recording_started_at"].isoformat() >= last_notice_end, "recording began during a notice"
    assert row["recording_started_at"] >= row["answered_at"]
    assert row["recording"] is not None


def test_the_caller_pressing_9_during_the_notice_leaves_no_recording(notice_stack, place_call):
    parties = new_parties(notice_stack)

    result = call(place_call, notice_stack, parties, during_notice=PRESS_9)

    assert result.caller.succeeded, result.caller.output
    assert result.counterpart.succeeded, "the call still connects without recording"
    row = wait_for_call_row(notice_stack, parties.virtual_number)
    assert row["disposition"] == "answered"
    assert row["recording_opt_out"] == "caller" and not row["recorded"] and row["recording"] is None
    notices = json.loads(row["notices"]) if isinstance(row["notices"], str) else row["notices"]
    assert [(n["party"], n["opted_out"]) for n in notices] == [("caller", True)], \
        "the counterpart needs no notice of a recording that will not happen"


def test_the_counterpart_pressing_9_during_the_notice_leaves_no_recording(notice_stack, place_call):
    parties = new_parties(notice_stack)

    result = call(place_call, notice_stack, parties, after_answer=f"<nop>{PRESS_9}</nop>")

    assert result.caller.succeeded, result.caller.output
    row = wait_for_call_row(notice_stack, parties.virtual_number)
    assert row["disposition"] == "answered"
    assert row["recording_opt_out"] == "callee" and not row["recorded"] and row["recording"] is None


def test_an_unrecorded_session_plays_no_notice(notice_stack, place_call):
    parties = new_parties(notice_stack, record=False)

    result = place_call(parties.a, parties.virtual_number, via=notice_stack, uas="uas_answer.xml", talk_ms=2000)

    assert result.caller.succeeded, result.caller.output
    assert not any(m.startswith("SIP/2.0 183") for m in result.caller.received())
    row = wait_for_call_row(notice_stack, parties.virtual_number)
    assert row["disposition"] == "answered" and json.loads(row["notices"] or "[]") == [] and not row["recorded"]
