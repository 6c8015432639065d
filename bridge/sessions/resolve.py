"""Who a caller reaches: pure decisions from what the database returned.

`resolve_route` is the single place that decides whether an inbound call on
a virtual number is connected, and to whom. It does no I/O, so every rule is
unit-tested without Asterisk or PostgreSQL.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from bridge.sessions.caller_id import direction_of, holds, number_of, other, participant, role_of
from bridge.sessions.models import MaskingSession, RouteLookup


class RejectReason(enum.Enum):
    UNKNOWN_NUMBER = "unknown_number"
    NOT_A_PARTICIPANT = "not_a_participant"
    SESSION_EXPIRED = "session_expired"
    SESSION_CLOSED = "session_closed"
    DATABASE_UNAVAILABLE = "database_unavailable"
    INVALID_CALLER = "invalid_caller"
    OUTSIDE_WINDOW = "outside_window"  # the session's purpose does not allow calls now
    INVALID_PIN = "invalid_pin"  # a shared number: no valid PIN within the attempts allowed
    PIN_UNAVAILABLE = "pin_unavailable"  # no longer given (the FastAGI fallback asks for PINs); kept for old rows
    PIN_LOCKED = "pin_locked"  # too many wrong PINs across calls: no PIN entry for now (bridge/sessions/pin_guard.py)


@dataclass(frozen=True)
class Connect:
    session: MaskingSession
    counterpart: str
    direction: str  # 'a_to_b' or 'b_to_a'

    @property
    def caller_id(self) -> str:
        """What the counterpart's phone shows: the virtual number that is theirs."""
        return number_of(self.session, role_of(self.session, self.counterpart))


@dataclass(frozen=True)
class Reject:
    reason: RejectReason
    session: MaskingSession | None = None


@dataclass(frozen=True)
class AskPin:
    """A shared (pin_mode) number: the caller's PIN names the session (bridge/sessions/pins.py)."""

    session: None = None


Route = Connect | Reject | AskPin


def resolve_route(lookup: RouteLookup, caller: str | None, now: datetime) -> Route:
    if not lookup.number_in_pool:
        return Reject(RejectReason.UNKNOWN_NUMBER)
    if lookup.pin_mode:
        return AskPin()
    if caller is None:
        return Reject(RejectReason.INVALID_CALLER)
    mine = [s for s in lookup.sessions if holds(s, caller, lookup.virtual_number)]
    if not mine:
        return Reject(RejectReason.NOT_A_PARTICIPANT)
    live = [s for s in mine if s.is_live(now)]
    if live:
        # The pool never gives a participant one number in two live sessions;
        # should the data say otherwise, the newest session wins.
        session = max(live, key=lambda s: s.created_at)
        if not session.in_window(now):
            return Reject(RejectReason.OUTSIDE_WINDOW, session)
        role = role_of(session, caller)  # a participant: `holds` said so
        return Connect(session, participant(session, other(role)), direction_of(role))
    latest = max(mine, key=lambda s: s.created_at)
    reason = RejectReason.SESSION_CLOSED if latest.status == "closed" else RejectReason.SESSION_EXPIRED
    return Reject(reason, latest)
