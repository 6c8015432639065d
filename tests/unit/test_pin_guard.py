"""Guessing PINs across calls: the counts, the lockouts and their backoff."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bridge.sessions.pin_guard import FailureCount, GuardLimits, after_failure, refused

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
LIMITS = GuardLimits(caller_failures=3, number_failures=10, window_seconds=3600, base_lockout_seconds=60)


def fail(times: int, count: FailureCount = FailureCount(), limit: int = 3, at: datetime = NOW) -> FailureCount:
    for _ in range(times):
        count = after_failure(count, limit, LIMITS, at)
    return count


def test_a_caller_is_locked_out_at_the_limit_and_each_lockout_lasts_twice_the_last():
    first = fail(3)
    second = fail(3, first, at=first.locked_until)
    third = fail(3, second, at=second.locked_until)

    assert fail(2).locked(NOW) is False
    assert first.locked(NOW) and first.locked_until == NOW + timedelta(seconds=60)
    assert second.locked_until - first.locked_until == timedelta(seconds=120)
    assert third.locked_until - second.locked_until == timedelta(seconds=240)


def test_failures_outside_the_window_start_the_count_again():
    two = fail(2)
    later = NOW + timedelta(seconds=3601)

    assert after_failure(two, 3, LIMITS, later).failures == 1
    assert not after_failure(two, 3, LIMITS, later).locked(later)


def test_backoff_stops_at_a_day():
    count = FailureCount(lockouts=20)

    locked = fail(3, count)

    assert locked.locked_until == NOW + timedelta(days=1)


def test_a_locked_number_still_takes_its_participants_but_a_locked_caller_is_refused_anywhere():
    number_locked = fail(10, limit=10)
    caller_locked = fail(3)

    assert refused(FailureCount(), number_locked, caller_holds_a_session=False, now=NOW)
    assert not refused(FailureCount(), number_locked, caller_holds_a_session=True, now=NOW)
    assert refused(caller_locked, FailureCount(), caller_holds_a_session=True, now=NOW)
    assert not refused(caller_locked, FailureCount(), True, now=caller_locked.locked_until)
