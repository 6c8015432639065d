"""What the parties hear and how a call ends: every unhappy outcome, and time limits.

Pure functions: the call flow asks, these answer. Release causes are Q.850
codes; chan_pjsip turns them into the SIP status the caller's carrier sees
(1 -> 404, 17 -> 486, 19 -> 480, 21 -> 403, 22 -> 410, 34 -> 503; a cause it
    does not map, such as 41, becomes 603 Decline).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridge.config import Prompts
from bridge.sessions.resolve import RejectReason

CAUSE_NORMAL = 16
CAUSE_USER_BUSY = 17
CAUSE_NO_ANSWER = 19
CAUSE_NO_USER_RESPONSE = 18
CAUSE_TEMPORARY_FAILURE = 34  # released so: 503 Service Unavailable
# The soft-hangup flag (AST_SOFTHANGUP_SHUTDOWN) on the ChannelHangupRequest
# Asterisk 22 sends for every channel it hangs up when it shuts down (`core
# stop`, a restart): measured here. It is a flag, not a Q.850 cause: the
# channel's cause is 16 then, as for a party's own hangup.
SOFTHANGUP_SHUTDOWN = 0x04


@dataclass(frozen=True)
class Ending:
    """An outcome other than a connected call."""

    disposition: str  # value of calls.disposition
    prompt: str  # core sounds joined by '&'
    cause: int  # Q.850 cause the caller's leg is released with


def ending_for_rejection(reason: RejectReason, prompts: Prompts) -> Ending:
    prompt, cause = {
        RejectReason.UNKNOWN_NUMBER: (prompts.unknown_number, 1),
        RejectReason.NOT_A_PARTICIPANT: (prompts.not_a_participant, 21),
        RejectReason.INVALID_CALLER: (prompts.not_a_participant, 21),
        RejectReason.SESSION_EXPIRED: (prompts.session_ended, 22),
        RejectReason.SESSION_CLOSED: (prompts.session_ended, 22),
        RejectReason.DATABASE_UNAVAILABLE: (prompts.unavailable, 34),
        RejectReason.OUTSIDE_WINDOW: (prompts.session_ended, 21),  # the out-of-session prompt; 403
        RejectReason.INVALID_PIN: (prompts.pin_failed, 21),  # 403: the caller never named a session
        RejectReason.PIN_LOCKED: (prompts.pin_failed, 21),  # 403 likewise, without another try
        RejectReason.PIN_UNAVAILABLE: (prompts.unavailable, 34),
    }[reason]
    return Ending("rejected", prompt, cause)


def ending_for_dial(dialstatus: str | None, cause: int | None, prompts: Prompts) -> Ending:
    """The counterpart's leg failed: map Asterisk's dial status (or cause) to an outcome."""
    status = (dialstatus or "").upper()
    if status == "BUSY" or (not status and cause == CAUSE_USER_BUSY):
        return Ending("busy", prompts.busy, CAUSE_USER_BUSY)
    if status == "NOANSWER" or (not status and cause in (CAUSE_NO_USER_RESPONSE, CAUSE_NO_ANSWER, 20)):
        return Ending("no_answer", prompts.no_answer, CAUSE_NO_ANSWER)
    return Ending("failed", prompts.unreachable, 34)


def sound_uris(prompt: str) -> list[str]:
    """`a&b` -> `['sound:a', 'sound:b']`, the form ARI's play takes."""
    return [f"sound:{name}" for name in prompt.split("&") if name]


def hangup_side(first_gone: str, caller_id: str) -> str:
    return "caller" if first_gone == caller_id else "callee"


def unseen_talk_seconds(by_clock: float, recorded: float | None, answered_at: datetime,
                        recording_started_at: datetime | None) -> float:
    """The talk of a call a party left while no process listened. The
    adopting process's clock counts the outage too. The recording, `recorded`
    seconds from `recording_started_at` (a recording a dead predecessor started
    and could not note began at the bridge: the answer), ends with the party
    it follows (MixMonitor with the caller's channel, a snoop with its leg),
    so where it ends sooner it is the better bound; it never lengthens the
    talk. It holds audio, not time: media stopped both ways for a while (no
    RTP) would shorten it."""
    if not recorded or recorded <= 0:  # nothing kept, or a format whose length is not read (gsm, sln)
        return round(by_clock, 3)
    began = max(0.0, (recording_started_at - answered_at).total_seconds()) if recording_started_at else 0.0
    return round(min(by_clock, began + recorded), 3)


def ended_by_asterisk(soft_hangup: int | None, vanished: bool) -> bool:
    """Did the call end because Asterisk went away, rather than a party hanging up?

    Either the leg disappeared without a hangup we saw (Asterisk died while we
    were disconnected), or Asterisk asked it to hang up because it is shutting
    down (`soft_hangup`: the flags of the leg's soft hangup request).
    """
    return vanished or bool((soft_hangup or 0) & SOFTHANGUP_SHUTDOWN)


def recording_consent(session_records: bool, heard: list) -> tuple[bool, str | None]:
    """(record?, who opted out). A call is recorded only if its session records
    and every party it was played to heard the notice to the end without
    opting out: a notice that failed or was cut short means no recording."""
    if not session_records:
        return False, None
    opted = next((h.party for h in heard if h.opted_out), None)
    if opted:
        return False, opted
    return bool(heard) and all(h.completed for h in heard), None


def consent_on_record(notices: list[dict]) -> bool:
    """Whether a call row's notice evidence says both parties agreed to be
    recorded: each heard the notice to its end and neither opted out. A process
    adopting a bridged call that is not yet recording (its predecessor died
    between the bridge and the recording) decides from this alone."""
    return ({n.get("party") for n in notices} >= {"caller", "callee"}
            and all(n.get("completed") and not n.get("opted_out") for n in notices))


WARNING_LEAD = 30.0  # seconds of notice before a time limit ends a call


@dataclass(frozen=True)
class LimitStep:
    """Something a call's time limit makes happen, `at` seconds after the answer."""

    action: str  # 'warn': both parties hear the warning; 'end': the call is released
    at: float


def call_time_limit(session_limit: int | None, max_call_seconds: int) -> int | None:
    """A connected call's limit: the session's, or MASKING_MAX_CALL_SECONDS (0:
    none) when that is shorter, so that no call outlives the operator's bound."""
    limits = [limit for limit in (session_limit, max_call_seconds) if limit]
    return min(limits) if limits else None


def time_limit_steps(limit_seconds: int | None, elapsed: float = 0.0) -> tuple[LimitStep, ...]:
    """What a call's time limit still has to do, `elapsed` seconds after the answer.

    The warning comes 30 s before the end, or halfway through a limit under a
    minute (where 30 s of notice would be most of the call). A warning whose
    time has passed is not repeated: a call adopted after a restart was warned
    by the process that ran it then. The end always stays, due at once if late.
    """
    if not limit_seconds:
        return ()
    warn_at = limit_seconds - WARNING_LEAD if limit_seconds >= 2 * WARNING_LEAD else limit_seconds / 2
    steps = (LimitStep("warn", warn_at), LimitStep("end", float(limit_seconds)))
    return tuple(step for step in steps if step.action == "end" or step.at > elapsed)
