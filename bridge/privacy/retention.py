"""Retention and erasure, as pure decisions: what is due, what is kept and why.

Three kinds of personal data age out on their own periods (in days; `None`
keeps them until erased): a recording from when it was stored, a call's
personal details (its custom field, who called whom) from when it started,
a session's numbers from when it ended (closed, or expired). A session under
legal hold keeps all three, its calls' and recordings' included, until the
hold is lifted. The store selects candidates past a cutoff; these functions
say, row by row, which of them go.

A session's purpose (bridge/privacy/purposes.py) may declare its own periods
for sessions and recordings: where it does, that period applies to the
purpose's sessions and their recordings, shorter or longer than the global one
(a global `never` included); where it does not, or the purpose is no longer
registered, the global period applies.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Mapping

from bridge.config import Settings, parse_days
from bridge.privacy.purposes import Registry, registry_for


class Kind(StrEnum):
    SESSIONS = "sessions"  # numbers nulled, participants removed, recordings shredded, calls cleared
    RECORDINGS = "recordings"  # data key deleted (crypto-shredded)
    CALL_DETAILS = "call_details"  # personal columns of the call row cleared
    WEBHOOK_EVENTS = "webhook_events"  # delivered or dead events (their bodies name the business's refs)


# The kinds a purpose may give its own period (its registry entry's `retention`).
PER_PURPOSE = {Kind.SESSIONS: "sessions_days", Kind.RECORDINGS: "recordings_days"}


class Verdict(StrEnum):
    DUE = "due"
    HELD = "legal_hold"  # past its time, kept while its session is under legal hold
    NOT_DUE = "not_due"


@dataclass(frozen=True)
class RetentionPolicy:
    """Days each kind is kept; `None`: until erased. `purposes`: a purpose's own
    periods, by kind (sessions, recordings), where its registry entry declares them."""

    recordings_days: int | None = 90
    call_details_days: int | None = 365
    sessions_days: int | None = 90
    purposes: Mapping[str, Mapping[Kind, int]] = field(default_factory=dict, hash=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        """The periods MASKING_RETAIN_*_DAYS set (validated when the settings were read)."""
        return cls(recordings_days=parse_days(settings.retain_recordings_days),
                   call_details_days=parse_days(settings.retain_call_details_days),
                   sessions_days=parse_days(settings.retain_sessions_days))

    def with_purposes(self, registry: Registry) -> RetentionPolicy:
        """This policy, with the periods each registered purpose declares."""
        declared = {code: {kind: getattr(purpose, name) for kind, name in PER_PURPOSE.items()
                           if getattr(purpose, name) is not None}
                    for code, purpose in registry.purposes.items()}
        return RetentionPolicy(self.recordings_days, self.call_details_days, self.sessions_days,
                               {code: periods for code, periods in declared.items() if periods})

    def days(self, kind: Kind, purpose: str | None = None) -> int | None:
        """The days `kind` is kept for a session of `purpose` (None: the global period)."""
        if purpose is not None and kind in self.purposes.get(purpose, {}):
            return self.purposes[purpose][kind]
        # Webhook bodies carry a call's custom field and the session's external ref: call details.
        return {Kind.SESSIONS: self.sessions_days, Kind.RECORDINGS: self.recordings_days,
                Kind.CALL_DETAILS: self.call_details_days, Kind.WEBHOOK_EVENTS: self.call_details_days}[kind]

    def cutoff(self, kind: Kind, now: datetime, purpose: str | None = None) -> datetime | None:
        """Rows (of a session of `purpose`) whose moment is before this are due; None: none ever is."""
        days = self.days(kind, purpose)
        return None if days is None else now - timedelta(days=days)

    def purpose_cutoffs(self, kind: Kind, now: datetime) -> dict[str, datetime]:
        """The purposes that declare their own period for `kind`, and their cutoffs."""
        return {code: now - timedelta(days=periods[kind]) for code, periods in sorted(self.purposes.items())
                if kind in periods}

    def latest_cutoff(self, kind: Kind, now: datetime) -> datetime | None:
        """No row of `kind` whose moment is at or after this is due, whatever its
        purpose; None: none ever is (no period, global or a purpose's)."""
        cutoffs = [c for c in (self.cutoff(kind, now), *self.purpose_cutoffs(kind, now).values()) if c is not None]
        return max(cutoffs, default=None)


def policy_in_force(settings: Settings) -> RetentionPolicy:
    """What the purge applies: the MASKING_RETAIN_* periods, and each registered
    purpose's own (MASKING_PURPOSE_REGISTRY; a registry that does not load is an error)."""
    return RetentionPolicy.from_settings(settings).with_purposes(registry_for(settings))


def verdict(policy: RetentionPolicy, kind: Kind, moment: datetime | None, held: bool, now: datetime,
            purpose: str | None = None) -> Verdict:
    """Whether a row of `kind` (of a session of `purpose`) whose clock started at `moment` goes now.

    `moment` None (a session still live, a call still in progress) is never
    due; exactly at the cutoff is not due yet: a period of N days keeps N full
    days. A due row under legal hold is HELD, a row not yet due is NOT_DUE
    whatever its hold.
    """
    cutoff = policy.cutoff(kind, now, purpose)
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
