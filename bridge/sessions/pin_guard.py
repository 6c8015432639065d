"""Guessing PINs across calls, as pure rules.

Three tries per call would let a caller who simply calls again guess a
4-digit PIN in a few thousand calls. So wrong entries are counted across
calls, in a window (`window_seconds`): per caller (their keyed number hash,
or one key for every withheld number) and per shared number (against many
callers guessing at once). A caller past `caller_failures` is locked out of
PIN entry on every shared number; a number past `number_failures` stops
taking PINs from callers who hold no live session on it (its participants
still get through). Each lockout lasts twice the one before (backoff), from
`base_lockout_seconds` up to a day; a right PIN clears the caller's count.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

MAX_LOCKOUT = timedelta(days=1)
WITHHELD = "withheld"  # the key of every caller whose number is not known


@dataclass(frozen=True)
class GuardLimits:
    caller_failures: int = 6
    number_failures: int = 60
    window_seconds: float = 3600.0
    base_lockout_seconds: float = 60.0


@dataclass(frozen=True)
class FailureCount:
    """One caller's or one number's wrong PINs, as stored (`pin_failures`)."""

    failures: int = 0
    window_started: datetime | None = None
    lockouts: int = 0
    locked_until: datetime | None = None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until


def after_failure(count: FailureCount, limit: int, limits: GuardLimits, now: datetime) -> FailureCount:
    """The count after one more wrong PIN: a new window once the last one is
    over; past `limit` in the window, a lockout twice as long as the last."""
    if count.window_started is None or now - count.window_started >= timedelta(seconds=limits.window_seconds):
        count = replace(count, failures=0, window_started=now)
    count = replace(count, failures=count.failures + 1)
    if count.failures < limit:
        return count
    lockouts = count.lockouts + 1
    lockout = min(timedelta(seconds=limits.base_lockout_seconds * 2 ** (lockouts - 1)), MAX_LOCKOUT)
    return FailureCount(failures=0, window_started=now, lockouts=lockouts, locked_until=now + lockout)


def refused(caller: FailureCount, number: FailureCount, caller_holds_a_session: bool, now: datetime) -> bool:
    """Whether this caller may not key a PIN on this number now."""
    return caller.locked(now) or (number.locked(now) and not caller_holds_a_session)


def combined(counts: list[FailureCount]) -> FailureCount:
    """One caller's counts kept under several lookup keys (a rotation in progress) as one:
    every failure counts, the longest lockout holds."""
    if not counts:
        return FailureCount()
    starts = [c.window_started for c in counts if c.window_started is not None]
    ends = [c.locked_until for c in counts if c.locked_until is not None]
    return FailureCount(sum(c.failures for c in counts), min(starts) if starts else None,
                        max(c.lockouts for c in counts), max(ends) if ends else None)
