"""Retention and erasure, as pure decisions: what is due, what is kept and why.

Three kinds of personal data age out on their own periods (in days; `None`
keeps them until erased): a recording from when it was stored, a call's
personal details (its custom field, who called whom) from when it started,
a session's numbers from when it ended (closed, or expired). A session under
legal hold keeps all three, its calls' and recordings' included, until the
hold is lifted. The store selects candidates past a cutoff; these functions
say, row by row, which of them go.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from bridge.config import Settings, parse_days


class Kind(StrEnum):
    SESSIONS = "sessions"  # numbers nulled, participants removed, recordings shredded, calls cleared
    RECORDINGS = "recordings"  # data key deleted (crypto-shredded)
    CALL_DETAILS = "call_details"  # personal columns of the call row cleared
    WEBHOOK_EVENTS = "webhook_events"  # delivered or dead events (their bodies name the business's refs)


class Verdict(StrEnum):
    DUE = "due"
    HELD = "legal_hold"  # past its time, kept while its session is under legal hold
    NOT_DUE = "not_due"


@dataclass(frozen=True)
class RetentionPolicy:
    """Days each kind is kept; `None`: until erased."""

    recordings_days: int | None = 90
    call_details_days: int | None = 365
    sessions_days: int | None = 90

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        """The periods MASKING_RETAIN_*_DAYS set (validated when the settings were read)."""
        return cls(recordings_days=parse_days(settings.retain_recordings_days),
                   call_details_days=parse_days(settings.retain_call_details_days),
                   sessions_days=parse_days(settings.retain_sessions_days))

    def days(self, kind: Kind) -> int | None:
        # Webhook bodies carry a call's custom field and the session's external ref: call details.
        return {Kind.SESSIONS: self.sessions_days, Kind.RECORDINGS: self.recordings_days,
                Kind.CALL_DETAILS: self.call_details_days, Kind.WEBHOOK_EVENTS: self.call_details_days}[kind]

    def cutoff(self, kind: Kind, now: datetime) -> datetime | None:
        """Rows whose moment is before this are due; None: nothing of this kind ever is."""
        days = self.days(kind)
        return None if days is None else now - timedelta(days=days)


def verdict(policy: RetentionPolicy, kind: Kind, moment: datetime | None, held: bool, now: datetime) -> Verdict:
    """Whether a row of `kind` whose clock started at `moment` goes now.

    `moment` None (a session still live, a call still in progress) is never
    due; exactly at the cutoff is not due yet: a period of N days keeps N full
    days. A due row under legal hold is HELD, a row not yet due is NOT_DUE
    whatever its hold.
    """
    cutoff = policy.cutoff(kind, now)
    if cutoff is None or moment is None or moment >= cutoff:
        return Verdict.NOT_DUE
    return Verdict.HELD if held else Verdict.DUE


def session_ended_at(status: str, closed_at: datetime | None, expires_at: datetime, now: datetime) -> datetime | None:
    """When a session stopped taking calls (its retention clock's start); None while live."""
    if status == "closed":
        return closed_at or expires_at
    if expires_at <= now:
        return expires_at
    return None


@dataclass(frozen=True)
class SessionToErase:
    """A session the subject takes part in, as erasure sees it."""

    id: uuid.UUID
    live: bool
    held: bool
    call_in_progress: bool
    hold_reason: str | None = None
    preserved: bool = False  # a participant's request is open or was refused < 30 days ago


class KeptBecause(StrEnum):
    LEGAL_HOLD = "legal_hold"
    PRESERVATION_HOLD = "preservation_hold"  # kept for a subject's request (bridge/privacy/rights.py)
    CALL_IN_PROGRESS = "call_in_progress"  # its recording is not written yet: erase again once it ends


@dataclass(frozen=True)
class ErasurePlan:
    erase: list[uuid.UUID] = field(default_factory=list)
    close_first: list[uuid.UUID] = field(default_factory=list)  # live: closed, then erased
    kept: list[tuple[uuid.UUID, KeptBecause, str | None]] = field(default_factory=list)


def plan_erasure(sessions: list[SessionToErase]) -> ErasurePlan:
    """Every session of the subject is erased, except those under legal hold and
    those with a call in progress (kept, with the reason). A live session is
    closed first: its number stops routing the subject's calls, then it is
    erased like any other."""
    plan = ErasurePlan()
    for session in sessions:
        if session.held:
            plan.kept.append((session.id, KeptBecause.LEGAL_HOLD, session.hold_reason))
        elif session.preserved:
            plan.kept.append((session.id, KeptBecause.PRESERVATION_HOLD, None))
        elif session.call_in_progress:
            plan.kept.append((session.id, KeptBecause.CALL_IN_PROGRESS, None))
        else:
            plan.erase.append(session.id)
            if session.live:
                plan.close_first.append(session.id)
    return plan
