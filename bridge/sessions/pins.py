"""PINs on shared virtual numbers: which PIN a new session gets, and where a
caller who entered one is connected. Pure functions: the store supplies the
PINs in use and the sessions a PIN names, and enforces uniqueness among live
sessions with a partial unique index (migration 0015).

Allocation rules:

1. a PIN is unique among the live sessions on its number;
2. a PIN whose session ended is not handed out again until a quarantine has
   passed, so a caller with a stale PIN hears "session ended", never a stranger;
3. among the free PINs the choice is random (the system's CSPRNG), so knowing
   one PIN says nothing about the others.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Collection

from bridge.config import Prompts
from bridge.sessions.models import MaskingSession
from bridge.sessions.resolve import Connect, Reject, RejectReason

PIN_LENGTHS = range(3, 9)  # digits; 4 gives 10,000 PINs per number
_SYSTEM_RANDOM = random.SystemRandom()
_DRAWS = 64  # random tries before listing the free PINs (only when the number is nearly full)


def pin_space(length: int) -> int:
    if length not in PIN_LENGTHS:
        raise ValueError(f"a PIN has {PIN_LENGTHS.start}-{PIN_LENGTHS.stop - 1} digits, not {length}")
    return 10 ** length


def choose_pin(taken: Collection[str], length: int, rng: random.Random = _SYSTEM_RANDOM) -> str | None:
    """A random PIN of `length` digits not in `taken` (live or quarantined), or
    None when every PIN of that length is taken."""
    space = pin_space(length)
    taken = set(taken)
    for _ in range(_DRAWS):
        pin = f"{rng.randrange(space):0{length}d}"
        if pin not in taken:
            return pin
    # Most PINs are taken: pick among the few free ones (this list is short
    # exactly when the draws above keep failing).
    free = [f"{n:0{length}d}" for n in range(space) if f"{n:0{length}d}" not in taken]
    return rng.choice(free) if free else None


@dataclass(frozen=True)
class PinLookup:
    """What the database knows about a PIN entered on a shared number."""

    sessions: tuple[MaskingSession, ...]  # sessions on the number that held this PIN, newest first


@dataclass(frozen=True)
class WrongPin:
    """The PIN names no session this caller may use: they may try again."""


PinRoute = Connect | Reject | WrongPin


def resolve_pin_route(lookup: PinLookup, caller: str | None, pin: str, now: datetime) -> PinRoute:
    """Where a caller who entered `pin` goes.

    A participant reaches the other one. A caller who is neither reaches
    participant b only if the session allows unknown callers (the customer
    side calling from another phone); otherwise it is a wrong PIN, and so is
    a PIN of someone else's ended session: a stranger learns nothing about
    sessions they are not part of. A participant whose session has ended
    hears so, as on a direct call.
    """
    sessions = [s for s in lookup.sessions if s.pin == pin]
    if not sessions:
        return WrongPin()
    live = [s for s in sessions if s.is_live(now)]
    session = live[0] if live else max(sessions, key=lambda s: s.created_at)
    if session.participant_a is None or session.participant_b is None:
        return WrongPin()  # anonymised (retention, erasure): nobody left to reach, or to tell
    if caller is not None and caller == session.participant_b:
        counterpart, direction = session.participant_a, "b_to_a"
    elif (caller is not None and caller == session.participant_a) or session.pin_unknown_callers:
        counterpart, direction = session.participant_b, "a_to_b"
    else:
        return WrongPin()
    if not session.is_live(now):
        return Reject(RejectReason.SESSION_CLOSED if session.status == "closed" else RejectReason.SESSION_EXPIRED,
                      session)
    if not session.in_window(now):
        return Reject(RejectReason.OUTSIDE_WINDOW, session)
    return Connect(session, counterpart, direction)


@dataclass(frozen=True)
class AskAgain:
    """No session named yet and attempts left: the caller keys the PIN again."""

    wrong: bool  # the entry named no session (rather than being empty): they are told so first


def after_entry(route: PinRoute, attempt: int, attempts: int, digits: str) -> Connect | Reject | AskAgain:
    """What follows a caller's `attempt`-th entry (`digits`; '' when silent),
    which leads to `route`: connect, the rejection, another try, or, when the
    attempts are used up, `invalid_pin` (the closing prompt and 403)."""
    if not isinstance(route, WrongPin):
        return route
    if attempt >= attempts:
        return Reject(RejectReason.INVALID_PIN)
    return AskAgain(wrong=bool(digits))


def pin_prompt(prompts: Prompts, again: AskAgain | None = None) -> str:
    """What the caller hears before an entry: the request, after "that PIN is
    wrong" when the last entry named no session."""
    return f"{prompts.pin_invalid}&{prompts.pin_request}" if again and again.wrong else prompts.pin_request


def pin_entered(digits: str, digit: str, length: int) -> tuple[str, bool]:
    """Add one DTMF digit to an entry: (digits so far, entry complete?).
    `#` ends an entry early, `*` starts it again; the entry is complete at
    `length` digits."""
    if digit == "#":
        return digits, True
    if digit == "*":
        return "", False
    if not digit.isdigit():
        return digits, False
    digits += digit
    return digits, len(digits) >= length
