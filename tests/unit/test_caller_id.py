"""The per-session caller ID policy, decided without any I/O: which number each
participant dials and sees, who a caller reaches on each, and which two numbers
a per-participant session gets."""
import dataclasses
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from bridge.sessions.caller_id import CLI_NAMES, holds, number_of, numbers_problem
from bridge.sessions.models import MaskingSession, RouteLookup
from bridge.sessions.pool import Candidate, StickyPreference, choose_number, choose_pair
from bridge.sessions.resolve import Connect, Reject, RejectReason, resolve_route

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
X_A, X_B, OTHER = "+6561000001", "+6561000002", "+6561000003"
ALICE, BOB, STRANGER = "+6591234567", "+6581234567", "+6598765432"


def session(*, policy="per_participant", number_b=X_B, a=ALICE, b=BOB, age_hours=1, status="active"):
    return MaskingSession(
        id=uuid.uuid4(), virtual_number=X_A, participant_a=a, participant_b=b, status=status, record=True,
        created_at=NOW - timedelta(hours=age_hours), expires_at=NOW + timedelta(hours=1),
        caller_id_policy=policy, virtual_number_b=number_b if policy == "per_participant" else None)


def dialing(number, *sessions):
    return RouteLookup(number_in_pool=True, sessions=tuple(sessions), virtual_number=number)


# which number each participant has

def test_shared_policy_gives_both_participants_the_one_virtual_number():
    s = session(policy="shared")
    assert number_of(s, "a") == number_of(s, "b") == X_A


def test_per_participant_policy_gives_a_and_b_each_their_own_number():
    s = session()
    assert (number_of(s, "a"), number_of(s, "b")) == (X_A, X_B)


def test_a_number_connects_only_its_holder():
    s = session()
    assert holds(s, ALICE, X_A) and holds(s, BOB, X_B)
    assert not holds(s, ALICE, X_B) and not holds(s, BOB, X_A) and not holds(s, STRANGER, X_A)


def test_either_participant_holds_the_number_of_a_shared_session():
    s = session(policy="shared")
    assert holds(s, ALICE, X_A) and holds(s, BOB, X_A)


# who a caller reaches, and what the counterpart sees

def test_a_dialing_their_number_reaches_b_who_sees_their_own_number():
    s = session()
    route = resolve_route(dialing(X_A, s), ALICE, NOW)
    assert route == Connect(s, BOB, "a_to_b") and route.caller_id == X_B


def test_b_dialing_their_number_reaches_a_who_sees_their_own_number():
    s = session()
    route = resolve_route(dialing(X_B, s), BOB, NOW)
    assert route == Connect(s, ALICE, "b_to_a") and route.caller_id == X_A


@pytest.mark.parametrize(("caller", "dialed"), [(ALICE, X_B), (BOB, X_A)])
def test_a_participant_dialing_the_other_ones_number_is_not_a_participant(caller, dialed):
    assert resolve_route(dialing(dialed, session()), caller, NOW) == Reject(RejectReason.NOT_A_PARTICIPANT)


@pytest.mark.parametrize("caller", [ALICE, BOB])
def test_a_shared_session_shows_the_counterpart_the_dialed_number(caller):
    route = resolve_route(dialing(X_A, session(policy="shared")), caller, NOW)
    assert isinstance(route, Connect) and route.caller_id == X_A


def test_a_lookup_that_does_not_name_the_dialed_number_still_routes_a_participant():
    s = session()
    route = resolve_route(RouteLookup(number_in_pool=True, sessions=(s,)), BOB, NOW)
    assert route == Connect(s, ALICE, "b_to_a") and route.caller_id == X_A


def test_b_on_their_number_reaches_this_session_while_another_one_shares_x_a_with_them():
    # B may hold X_A in another live session (with someone else): on X_B they reach A.
    mine = session()
    theirs = session(policy="shared", a=STRANGER, b=BOB, age_hours=0.5)
    assert resolve_route(dialing(X_B, mine, theirs), BOB, NOW) == Connect(mine, ALICE, "b_to_a")
    assert resolve_route(dialing(X_A, mine, theirs), BOB, NOW) == Connect(theirs, STRANGER, "b_to_a")


def test_an_ended_per_participant_session_is_reported_to_its_holder_only():
    closed = session(status="closed")
    assert resolve_route(dialing(X_B, closed), BOB, NOW) == Reject(RejectReason.SESSION_CLOSED, closed)
    assert resolve_route(dialing(X_B, closed), ALICE, NOW) == Reject(RejectReason.NOT_A_PARTICIPANT)


def test_the_session_json_names_each_participants_number():
    body = session().to_json(NOW)
    assert (body["caller_id_policy"], body["virtual_number"], body["virtual_number_b"]) == \
        ("per_participant", X_A, X_B)
    shared = session(policy="shared").to_json(NOW)
    assert (shared["caller_id_policy"], shared["virtual_number_b"]) == ("shared", None)


@pytest.mark.parametrize(("policy", "a", "b", "problem"), [
    ("shared", None, None, None),
    ("per_participant", None, None, None),
    ("per_participant", X_A, X_B, None),
    ("per_participant", None, X_B, None),
    ("shared", None, X_B, "needs caller_id_policy per_participant"),
    ("per_participant", X_A, X_A, "must differ"),
])
def test_explicit_numbers_must_fit_the_policy(policy, a, b, problem):
    found = numbers_problem(policy, a, b)
    assert (found is None) if problem is None else (problem in found)


def test_the_cli_gets_the_same_checks_in_its_own_option_names():
    assert numbers_problem("shared", None, X_B, CLI_NAMES) == \
        "--number-b is B's own number: it needs --caller-id per_participant"
    assert numbers_problem("per_participant", X_A, X_A, CLI_NAMES) == "--number-b must differ from --number"


# which two numbers a per-participant session gets

SG_1, SG_2, SG_3, US_1 = "+6560000001", "+6560000002", "+6560000003", "+12025550101"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def free(number, *, country=None, minutes=None, held_before=False, quarantined=False):
    return Candidate(number, country or ("US" if number.startswith("+1") else "SG"),
                     None if minutes is None else T0 + timedelta(minutes=minutes), held_before, quarantined)


def test_the_pair_is_two_different_numbers_even_when_both_prefer_the_same():
    both = [free(SG_1, minutes=1), free(SG_2, minutes=2)]
    assert choose_pair(both, both, ALICE, BOB) == (SG_1, SG_2)


def test_a_number_held_by_one_participant_can_still_be_the_others():
    # A already holds SG_1 elsewhere, so it is not among A's candidates; B gets it.
    assert choose_pair([free(SG_2)], [free(SG_1), free(SG_2)], ALICE, BOB) == (SG_2, SG_1)


def test_when_a_s_best_number_is_b_s_only_one_a_takes_the_next():
    assert choose_pair([free(SG_1, minutes=1), free(SG_2, minutes=2)], [free(SG_1)], ALICE, BOB) == (SG_2, SG_1)


def test_no_pair_when_the_only_free_number_is_the_same_for_both():
    assert choose_pair([free(SG_1)], [free(SG_1)], ALICE, BOB) is None


@pytest.mark.parametrize(("side_a", "side_b"), [([], [SG_1]), ([SG_1], []), ([], [])])
def test_no_pair_when_a_participant_has_no_free_number(side_a, side_b):
    assert choose_pair([free(n) for n in side_a], [free(n) for n in side_b], ALICE, BOB) is None


def test_quarantine_is_per_holder():
    # SG_1 is quarantined for A (they used it with someone else lately) but not for B.
    assert choose_pair([free(SG_1, quarantined=True), free(SG_2, minutes=5)], [free(SG_1)], ALICE, BOB) \
        == (SG_2, SG_1)
    assert choose_pair([free(SG_1, quarantined=True)], [free(SG_2)], ALICE, BOB) is None


def test_each_participant_gets_a_number_of_their_own_country_first():
    us_customer = "+12025550123"
    numbers = [free(SG_1, minutes=1), free(US_1, minutes=2)]
    assert choose_pair(numbers, numbers, us_customer, BOB) == (US_1, SG_1)
    assert choose_pair(numbers, numbers, ALICE, us_customer) == (SG_1, US_1)


def test_sticky_preference_applies_to_each_holder():
    a_side = [free(SG_1, minutes=1), free(SG_2, minutes=2, held_before=True)]
    b_side = [free(SG_1, minutes=1), free(SG_3, minutes=3, held_before=True)]
    assert choose_pair(a_side, b_side, ALICE, BOB, StickyPreference.PREFER) == (SG_2, SG_3)
    assert choose_pair(a_side, b_side, ALICE, BOB, StickyPreference.NONE) == (SG_1, SG_3)


def test_least_recently_allocated_first_for_each_side():
    numbers = [free(SG_1, minutes=30), free(SG_2, minutes=10), free(SG_3)]
    assert choose_pair(numbers, numbers, ALICE, BOB) == (SG_3, SG_2)


def test_the_shared_allocation_is_unchanged_by_the_refactoring():
    numbers = [free(SG_1, minutes=30), free(US_1), free(SG_2, minutes=10, quarantined=True)]
    assert choose_number(numbers, ALICE, BOB) == SG_1
    assert choose_number(numbers, ALICE, BOB, country_match=False) == US_1
    assert choose_number([dataclasses.replace(n, quarantined=True) for n in numbers], ALICE, BOB) is None
