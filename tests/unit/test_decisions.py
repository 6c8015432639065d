"""What the caller hears, and the release cause, for every unhappy outcome."""
import pytest

from bridge.calls.decisions import (
    Ending, LimitStep, ending_for_dial, ending_for_rejection, hangup_side, sound_uris, time_limit_steps,
)
from bridge.config import Prompts
from bridge.sessions.resolve import RejectReason

P = Prompts()


@pytest.mark.parametrize(
    ("reason", "prompt", "cause"),
    [
        (RejectReason.UNKNOWN_NUMBER, P.unknown_number, 1),
        (RejectReason.NOT_A_PARTICIPANT, P.not_a_participant, 21),
        (RejectReason.INVALID_CALLER, P.not_a_participant, 21),
        (RejectReason.SESSION_EXPIRED, P.session_ended, 22),
        (RejectReason.SESSION_CLOSED, P.session_ended, 22),
        (RejectReason.DATABASE_UNAVAILABLE, P.unavailable, 34),
    ],
)
def test_each_rejection_reason_has_its_prompt_and_release_cause(reason, prompt, cause):
    assert ending_for_rejection(reason, P) == Ending("rejected", prompt, cause)


def test_rejection_uses_the_configured_prompts():
    assert ending_for_rejection(RejectReason.UNKNOWN_NUMBER, Prompts(unknown_number="custom")).prompt == "custom"


@pytest.mark.parametrize(
    ("dialstatus", "cause", "disposition", "prompt"),
    [
        ("BUSY", None, "busy", P.busy),
        ("busy", None, "busy", P.busy),
        ("NOANSWER", None, "no_answer", P.no_answer),
        ("CHANUNAVAIL", None, "failed", P.unreachable),
        ("CONGESTION", None, "failed", P.unreachable),
        ("", 17, "busy", P.busy),
        (None, 19, "no_answer", P.no_answer),
        ("", 34, "failed", P.unreachable),
        (None, None, "failed", P.unreachable),
    ],
)
def test_failed_dial_maps_to_a_disposition_and_prompt(dialstatus, cause, disposition, prompt):
    ending = ending_for_dial(dialstatus, cause, P)
    assert (ending.disposition, ending.prompt) == (disposition, prompt)


def test_busy_callee_releases_the_caller_as_user_busy():
    assert ending_for_dial("BUSY", None, P).cause == 17


def test_unreachable_callee_releases_the_caller_with_cause_34():
    assert ending_for_dial("CHANUNAVAIL", None, P).cause == 34


def test_no_answer_releases_the_caller_with_a_no_answer_cause_not_a_decline():
    # 18 or 19 depending on which the carrier-facing mapping settles on; never
    # a cause chan_pjsip would turn into 603 Decline.
    assert ending_for_dial("NOANSWER", None, P).cause in (18, 19)


def test_dialstatus_takes_precedence_over_the_hangup_cause():
    assert ending_for_dial("CHANUNAVAIL", 17, P).disposition == "failed"


def test_sound_uris_turn_an_ampersand_list_into_ari_sound_uris():
    assert sound_uris("vm-nobodyavail&please-try-call-later") == [
        "sound:vm-nobodyavail", "sound:please-try-call-later"]


def test_sound_uris_skip_empty_names():
    assert sound_uris("a&&b&") == ["sound:a", "sound:b"]
    assert sound_uris("") == []


def test_hangup_side_is_caller_when_the_caller_leg_went_first():
    assert hangup_side("chan-1", "chan-1") == "caller"


def test_hangup_side_is_callee_when_the_other_leg_went_first():
    assert hangup_side("chan-2", "chan-1") == "callee"


def test_a_call_is_ended_by_asterisk_when_its_leg_vanished_or_asterisk_shut_down():
    from bridge.calls.decisions import SOFTHANGUP_SHUTDOWN, ended_by_asterisk

    assert ended_by_asterisk(None, vanished=True)
    assert ended_by_asterisk(SOFTHANGUP_SHUTDOWN, vanished=False)
    assert ended_by_asterisk(SOFTHANGUP_SHUTDOWN | 0x20, vanished=False)
    assert not ended_by_asterisk(0x20, vanished=False)  # an explicit hangup (ARI DELETE)
    assert not ended_by_asterisk(None, vanished=False)


def test_a_hangup_no_process_saw_ends_the_talk_where_the_recording_ends_if_sooner():
    from datetime import datetime, timedelta, timezone

    from bridge.calls.decisions import unseen_talk_seconds

    answered = datetime(2026, 12, 7, 21, 0, tzinfo=timezone.utc)
    assert unseen_talk_seconds(42.0, 6.25, answered, None) == 6.25  # the outage is not talk
    assert unseen_talk_seconds(42.0, 6.25, answered, answered + timedelta(seconds=0.5)) == 6.75  # begun late
    # Begun again by a process that adopted it (its file overwritten): the talk before counts.
    assert unseen_talk_seconds(42.0, 6.25, answered, answered + timedelta(seconds=20)) == 26.25
    assert unseen_talk_seconds(42.0, 6.25, answered, answered - timedelta(seconds=1)) == 6.25  # clocks apart
    assert unseen_talk_seconds(42.0, 50.0, answered, None) == 42.0  # a recording never lengthens it
    assert unseen_talk_seconds(42.0004, None, answered, None) == 42.0  # nothing kept: the clock's
    assert unseen_talk_seconds(42.0, 0.0, answered, None) == 42.0  # gsm, sln: length not read


# -- time limits -------------------------------------------------------------------
def test_no_time_limit_means_nothing_to_do():
    assert time_limit_steps(None) == () and time_limit_steps(0) == ()


def test_a_long_limit_warns_thirty_seconds_before_the_end():
    assert time_limit_steps(300) == (LimitStep("warn", 270.0), LimitStep("end", 300.0))


@pytest.mark.parametrize(("limit", "warn_at"), [(4, 2.0), (59, 29.5), (60, 30.0), (61, 31.0)])
def test_a_limit_under_a_minute_warns_halfway(limit, warn_at):
    assert time_limit_steps(limit)[0] == LimitStep("warn", warn_at)


def test_an_adopted_call_past_its_warning_is_not_warned_twice():
    assert time_limit_steps(300, elapsed=280) == (LimitStep("end", 300.0),)


def test_an_adopted_call_past_its_limit_still_ends():
    assert time_limit_steps(300, elapsed=400) == (LimitStep("end", 300.0),)


def test_the_rows_notice_evidence_gives_consent_only_when_both_heard_it_to_the_end_and_none_opted_out():
    from bridge.calls.decisions import consent_on_record

    heard = {"completed": True, "opted_out": False}
    assert consent_on_record([{"party": "caller", **heard}, {"party": "callee", **heard}])
    assert not consent_on_record([{"party": "caller", **heard}])  # the counterpart never heard it
    assert not consent_on_record([])  # an unrecorded call plays no notice
    assert not consent_on_record([{"party": "caller", **heard}, {"party": "callee", "completed": False,
                                                                 "opted_out": False}])
    assert not consent_on_record([{"party": "caller", "completed": True, "opted_out": True},
                                  {"party": "callee", **heard}])
