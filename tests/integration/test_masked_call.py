"""A masked call through real SIPp, Asterisk, service and PostgreSQL.

Success is counted at the far end: what the counterpart's SIPp received on the
wire, the audio that reached it, the recording on disk, and the call row.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import wave
from pathlib import Path

import pytest

from bridge.privacy.crypto import recording_key_context
from bridge.recordings.sealed import plaintext_size, read_range
from tests.integration.conftest import new_parties, query, wait_for_call_row
from tests.support.rtp import rms

TALK_MS = 4000


def number_forms(number: str) -> list[str]:
    """Every spelling of a number a leak could take: E.164, digits, national."""
    digits = number.lstrip("+")
    return [number, digits, digits[2:]]


def sealed_audio(stack, recording: dict) -> bytes:
    """A recording's audio, decrypted with its wrapped key as the API does, after
    checking that the file on disk holds none of it in the clear."""
    path = Path(recording["storage_path"])
    key = query(stack.dsn, "SELECT * FROM recording_keys WHERE recording_id = $1", recording["id"])[0]
    dek = stack.keys.open(key["key_id"], key["wrapped_key"], recording_key_context(recording["id"]))
    audio = b"".join(read_range(path, dek, recording["id"], 0, plaintext_size(path)))
    on_disk = path.read_bytes()
    assert recording["sealed"] and audio.startswith(b"RIFF") and not on_disk.startswith(b"RIFF")
    assert not any(audio[i:i + 32] in on_disk for i in range(0, len(audio) - 32, 4096)), "plaintext on disk"
    assert len(audio) == recording["bytes"] and hashlib.sha256(audio).hexdigest() == recording["sha256"]
    return audio


def recording_level(stack, recording: dict) -> tuple[float, float]:
    with wave.open(io.BytesIO(sealed_audio(stack, recording))) as w:
        frames = w.readframes(w.getnframes())
        seconds = w.getnframes() / w.getframerate()
    samples = [int.from_bytes(frames[i:i + 2], "little", signed=True) for i in range(0, len(frames), 2)]
    return seconds, rms(samples)


def assert_no_leftovers(stack):
    channels, bridges = stack.leftovers()
    assert channels == [] and bridges == [], f"leaked in Asterisk: {channels} {bridges}"


def test_caller_reaches_counterpart_who_sees_only_the_virtual_number(stack, place_call):
    parties = new_parties(stack)

    call = place_call(parties.a, parties.virtual_number, uas="uas_answer.xml", talk_ms=TALK_MS)

    assert call.caller.succeeded, call.caller.output
    assert call.counterpart.succeeded, call.counterpart.output
    invite = next(m for m in call.counterpart.received() if m.startswith("INVITE"))
    assert re.search(r"^To: <sip:" + re.escape(parties.b) + "@", invite, re.M), invite
    assert re.search(r"^From: .*<sip:" + re.escape(parties.virtual_number) + "@", invite, re.M), invite
    assert re.search(r"^P-Asserted-Identity: .*<sip:" + re.escape(parties.virtual_number) + "@", invite, re.M)
    everything_received = "\n".join(call.counterpart.received())
    for form in number_forms(parties.a):
        assert form not in everything_received, "caller's number reached the counterpart"
    assert not re.search(r"^(Remote-Party-ID|Diversion):", everything_received, re.M | re.I)
    # Media flowed both ways: the caller's audio reached the counterpart and came back.
    assert call.counterpart_rtp.packets > 100 and call.counterpart_rtp.level > 200
    assert call.caller_rtp.packets > 100 and call.caller_rtp.level > 200
    assert set(call.counterpart_rtp.payload_types) <= {8, 101}, "counterpart leg was transcoded"

    row = wait_for_call_row(stack, parties.virtual_number, with_recording=True)
    assert row["disposition"] == "answered" and row["direction"] == "a_to_b"
    assert row["answered_at"] > row["ringing_at"] > row["started_at"] and row["ended_at"] > row["answered_at"]
    assert row["hangup_by"] == "caller" and row["setup_ms"] is not None
    assert abs(float(row["talk_seconds"]) - TALK_MS / 1000) < 1.5

    seconds, level = recording_level(stack, row["recording"])
    assert abs(seconds - TALK_MS / 1000) < 1.5 and level > 200, (seconds, level)
    assert_no_leftovers(stack)


def test_counterpart_calls_back_on_the_same_virtual_number(stack, place_call):
    parties = new_parties(stack)

    call = place_call(parties.b, parties.virtual_number, uas="uas_answer.xml", talk_ms=2000)

    assert call.counterpart.succeeded, call.counterpart.output
    invite = next(m for m in call.counterpart.received() if m.startswith("INVITE"))
    assert re.search(r"^To: <sip:" + re.escape(parties.a) + "@", invite, re.M)
    assert parties.b not in "\n".join(call.counterpart.received())
    row = wait_for_call_row(stack, parties.virtual_number, with_recording=True)
    assert row["disposition"] == "answered" and row["direction"] == "b_to_a"
    assert_no_leftovers(stack)


def test_counterpart_hanging_up_ends_the_call_for_the_caller(stack, place_call):
    parties = new_parties(stack, record=False)

    call = place_call(parties.a, parties.virtual_number, uac="uac_call.xml", uas="uas_answer_hangup.xml",
                      talk_ms=8000, counterpart_talk_ms=1500)

    assert call.counterpart.succeeded, call.counterpart.output
    assert any(m.startswith("BYE") for m in call.caller.received()), "caller was not hung up"
    row = wait_for_call_row(stack, parties.virtual_number)
    assert row["disposition"] == "answered" and row["hangup_by"] == "callee"
    assert row["recorded"] is False and row["recording"] is None
    assert_no_leftovers(stack)


@pytest.mark.parametrize(
    "case, status, reason, disposition, caller_status",
    [
        ("busy", 486, "Busy Here", "busy", 486),
        ("unreachable", 503, "Service Unavailable", "failed", 503),
    ],
)
def test_counterpart_refusing_gives_the_caller_a_prompt_and_a_status(
        stack, place_call, case, status, reason, disposition, caller_status):
    parties = new_parties(stack)

    call = place_call(parties.a, parties.virtual_number, uac="uac_rejected.xml", uas="uas_status.xml",
                      uac_values={"final_status": caller_status, "tag": case},
                      uas_values={"status": status, "reason": reason, "tag": case}, uas_args=())

    assert call.counterpart.succeeded, call.counterpart.output
    assert call.caller.succeeded, call.caller.output
    assert any(m.startswith("SIP/2.0 183") for m in call.caller.received()), "no early media for the prompt"
    assert call.caller_rtp.packets > 50 and call.caller_rtp.level > 100, "caller heard no prompt"
    row = wait_for_call_row(stack, parties.virtual_number)
    assert row["disposition"] == disposition and row["answered_at"] is None
    assert row["recording"] is None
    assert_no_leftovers(stack)


def test_counterpart_not_answering_in_time_gives_the_no_answer_prompt(stack, place_call):
    parties = new_parties(stack)  # the test stack's dial timeout is 4 s

    call = place_call(parties.a, parties.virtual_number, uac="uac_rejected.xml", uas="uas_ring.xml",
                      uac_values={"final_status": 480, "tag": "noanswer"}, uas_args=(), timeout=60)

    assert call.counterpart.succeeded, "counterpart was not cancelled: " + call.counterpart.output
    assert call.caller.succeeded, call.caller.output
    assert call.caller_rtp.level > 100, "caller heard no prompt"
    row = wait_for_call_row(stack, parties.virtual_number)
    assert row["disposition"] == "no_answer" and row["ringing_at"] is not None
    assert_no_leftovers(stack)


def test_caller_hanging_up_while_ringing_cancels_the_counterpart(stack, place_call):
    parties = new_parties(stack, record=False)  # a recorded call rings in-band after its notice, without a 180

    call = place_call(parties.a, parties.virtual_number, uac="uac_cancel.xml", uas="uas_ring.xml",
                      talk_ms=1500, uas_args=())

    assert call.caller.succeeded, call.caller.output
    assert call.counterpart.succeeded, "counterpart never got CANCEL: " + call.counterpart.output
    row = wait_for_call_row(stack, parties.virtual_number)
    assert row["disposition"] == "cancelled" and row["hangup_by"] == "caller"
    assert_no_leftovers(stack)


@pytest.mark.parametrize("case", ["unknown_number", "not_a_participant", "session_expired", "session_closed",
                                  "outside_window"])
def test_caller_outside_a_live_session_hears_a_prompt_and_nobody_is_dialed(stack, place_call, case):
    parties = new_parties(stack, ttl=1 if case == "session_expired" else 3600)
    caller, dialed, status = parties.a, parties.virtual_number, {
        "unknown_number": 404, "not_a_participant": 403, "session_expired": 410, "session_closed": 410,
        "outside_window": 403}[case]
    if case == "unknown_number":
        dialed = "+6569990000"
    elif case == "not_a_participant":
        caller = "+6597770000"
    elif case == "outside_window":  # the purpose allowed calls during an hour that is over
        query(stack.dsn, "UPDATE masking_sessions SET window_starts_at = now() - interval '2 hours',"
                         " window_ends_at = now() - interval '1 hour' WHERE virtual_number = $1",
              parties.virtual_number)
    elif case == "session_closed":
        query(stack.dsn, "UPDATE masking_sessions SET status = 'closed', closed_at = now()"
                         " WHERE virtual_number = $1", parties.virtual_number)
    else:
        import time
        time.sleep(1.2)

    call = place_call(caller, dialed, uac="uac_rejected.xml", uac_values={"final_status": status, "tag": case})

    assert call.caller.succeeded, call.caller.output
    assert call.caller_rtp.packets > 50 and call.caller_rtp.level > 100, "caller heard no prompt"
    row = wait_for_call_row(stack, dialed)
    assert row["disposition"] == "rejected" and row["reject_reason"] == case
    assert row["callee_channel_id"] is None, "someone was dialed"
    assert_no_leftovers(stack)


def test_database_down_gives_the_caller_a_prompt_and_the_service_stays_up(stack, place_call):
    parties = new_parties(stack)
    stack.stop_service()
    stack.start_service(MASKING_DATABASE_URL="postgresql://postgres@127.0.0.1:9/nowhere",
                        MASKING_DB_TIMEOUT="1")
    try:
        call = place_call(parties.a, parties.virtual_number, uac="uac_rejected.xml",
                          uac_values={"final_status": 503, "tag": "dbdown"})
        assert call.caller.succeeded, call.caller.output
        assert call.caller_rtp.level > 100, "caller heard no prompt"
        assert stack.service.poll() is None, "service died"
        assert_no_leftovers(stack)
    finally:
        stack.stop_service()
        stack.start_service()


def test_asterisk_sends_the_service_only_the_event_types_it_reads(stack, place_call):
    """Without the application's filter, three events in four were ChannelVarset,
    ChannelDialplan and the like: encoded, sent, decoded and dropped."""
    from bridge.calls.events import EVENTS_USED

    parties = new_parties(stack)
    place_call(parties.a, parties.virtual_number, uas="uas_answer.xml", talk_ms=1000)
    wait_for_call_row(stack, parties.virtual_number, with_recording=True)

    seen: dict[str, int] = {}  # every event any call of this module's stack was handed
    for line in stack.service_log.read_text().splitlines():
        if '"ari.event"' in line and (entry := json.loads(line)).get("event") == "ari.event":
            seen[entry["type"]] = seen.get(entry["type"], 0) + 1
    assert {"StasisStart", "Dial", "PlaybackFinished"} <= set(seen), seen
    assert set(seen) <= EVENTS_USED, f"sent although unused: {seen}"


def test_no_phone_number_appears_in_the_service_logs(stack, place_call):
    parties = new_parties(stack)
    place_call(parties.a, parties.virtual_number, uas="uas_answer.xml", talk_ms=1000)
    wait_for_call_row(stack, parties.virtual_number, with_recording=True)

    logs = stack.service_log.read_text()
    assert '"event": "call.bridged"' in logs
    for number in (parties.a, parties.b, parties.virtual_number):
        for form in number_forms(number):
            assert form not in logs, f"a phone number appears in the logs ({form[:3]}...)"
