"""Who a caller on a virtual number reaches, decided without any I/O."""
import dataclasses
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from bridge.sessions.models import MaskingSession, RouteLookup
from bridge.sessions.resolve import Connect, Reject, RejectReason, resolve_route

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
VIRTUAL = "+6561234567"
ALICE = "+6591234567"
BOB = "+6581234567"
STRANGER = "+6598765432"


def session(*, status="active", age_hours=1, expires_in_hours=1, a=ALICE, b=BOB):
    created = NOW - timedelta(hours=age_hours)
    return MaskingSession(
        id=uuid.uuid4(), virtual_number=VIRTUAL, participant_a=a, participant_b=b,
        status=status, record=True, created_at=created,
        expires_at=NOW + timedelta(hours=expires_in_hours),
        closed_at=NOW - timedelta(minutes=1) if status == "closed" else None,
    )


def lookup(*sessions, in_pool=True):
    return RouteLookup(number_in_pool=in_pool, sessions=tuple(sessions))


# resolve_route

def test_number_outside_the_pool_is_rejected_as_unknown():
    assert resolve_route(lookup(session(), in_pool=False), ALICE, NOW) == Reject(RejectReason.UNKNOWN_NUMBER)


def test_unknown_number_wins_over_a_missing_caller_id():
    assert resolve_route(lookup(in_pool=False), None, NOW).reason is RejectReason.UNKNOWN_NUMBER


def test_caller_without_a_usable_number_is_rejected_as_invalid_caller():
    assert resolve_route(lookup(session()), None, NOW) == Reject(RejectReason.INVALID_CALLER)


def test_caller_outside_any_session_is_rejected_as_not_a_participant():
    assert resolve_route(lookup(session()), STRANGER, NOW) == Reject(RejectReason.NOT_A_PARTICIPANT)


def test_caller_on_a_pooled_number_with_no_sessions_is_not_a_participant():
    assert resolve_route(lookup(), ALICE, NOW).reason is RejectReason.NOT_A_PARTICIPANT


def test_participant_a_in_a_live_session_is_connected_to_b():
    s = session()
    assert resolve_route(lookup(s), ALICE, NOW) == Connect(s, BOB, "a_to_b")


def test_participant_b_in_a_live_session_is_connected_to_a_in_reverse_direction():
    s = session()
    assert resolve_route(lookup(s), BOB, NOW) == Connect(s, ALICE, "b_to_a")


def test_caller_of_an_expired_session_is_told_it_expired():
    s = session(expires_in_hours=-0.5)
    assert resolve_route(lookup(s), ALICE, NOW) == Reject(RejectReason.SESSION_EXPIRED, s)


def test_session_expiring_exactly_now_is_already_expired():
    s = session(expires_in_hours=0)
    assert resolve_route(lookup(s), ALICE, NOW).reason is RejectReason.SESSION_EXPIRED


def test_caller_of_a_closed_session_is_told_it_is_closed():
    s = session(status="closed")
    assert resolve_route(lookup(s), BOB, NOW) == Reject(RejectReason.SESSION_CLOSED, s)


def test_closed_session_past_its_expiry_reports_closed_not_expired():
    s = session(status="closed", expires_in_hours=-1)
    assert resolve_route(lookup(s), ALICE, NOW).reason is RejectReason.SESSION_CLOSED


def test_newest_live_session_wins_when_several_are_live():
    old = session(age_hours=5, b=STRANGER)
    new = session(age_hours=1)
    assert resolve_route(lookup(new, old), ALICE, NOW) == Connect(new, BOB, "a_to_b")
    assert resolve_route(lookup(old, new), ALICE, NOW) == Connect(new, BOB, "a_to_b")


def test_older_live_session_still_connects_when_a_newer_one_is_closed():
    live = session(age_hours=5)
    closed = session(status="closed", age_hours=1, b=STRANGER)
    assert resolve_route(lookup(closed, live), ALICE, NOW) == Connect(live, BOB, "a_to_b")


def test_rejection_reports_the_newest_of_several_dead_sessions():
    expired = session(age_hours=1, expires_in_hours=-0.5)
    closed = session(status="closed", age_hours=5)
    assert resolve_route(lookup(closed, expired), ALICE, NOW) == Reject(RejectReason.SESSION_EXPIRED, expired)


# purpose windows

@pytest.mark.parametrize(("starts", "ends"), [(1, 2), (-2, -1)])
def test_caller_outside_the_purpose_window_is_refused_with_the_session(starts, ends):
    windowed = dataclasses.replace(session(), window_starts_at=NOW + timedelta(hours=starts),
                                   window_ends_at=NOW + timedelta(hours=ends))
    route = resolve_route(lookup(windowed), ALICE, NOW)
    assert route == Reject(RejectReason.OUTSIDE_WINDOW, windowed)


def test_caller_inside_the_purpose_window_is_connected():
    windowed = dataclasses.replace(session(), window_starts_at=NOW - timedelta(minutes=1),
                                   window_ends_at=NOW + timedelta(minutes=1))
    assert resolve_route(lookup(windowed), ALICE, NOW) == Connect(windowed, BOB, "a_to_b")
