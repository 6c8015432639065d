"""PINs on shared numbers: allocation and where an entered PIN leads, without I/O."""
import dataclasses
import random
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import Prompts
from bridge.sessions.models import MaskingSession, RouteLookup
from bridge.sessions.pins import (
    AskAgain, PinLookup, WrongPin, after_entry, choose_pin, pin_entered, pin_prompt, pin_space, resolve_pin_route,
)
from bridge.sessions.resolve import AskPin, Connect, Reject, RejectReason, resolve_route

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
SHARED = "+6561234567"
CUSTOMER = "+6591234567"
DRIVER = "+6581234567"
STRANGER = "+6598765432"


def session(pin="4821", *, status="active", expires_in_hours=1, age_hours=1, unknown_callers=False,
            window_ends_in_hours=None):
    return MaskingSession(
        id=uuid.uuid4(), virtual_number=SHARED, participant_a=CUSTOMER, participant_b=DRIVER, status=status,
        record=False, created_at=NOW - timedelta(hours=age_hours), expires_at=NOW + timedelta(hours=expires_in_hours),
        closed_at=NOW - timedelta(minutes=1) if status == "closed" else None, pin=pin,
        pin_unknown_callers=unknown_callers,
        window_ends_at=NOW + timedelta(hours=window_ends_in_hours) if window_ends_in_hours is not None else None,
    )


# allocation

@given(taken=st.sets(st.integers(0, 999).map(lambda n: f"{n:03d}"), max_size=999), seed=st.integers())
@settings(max_examples=200)
def test_a_new_pin_is_never_one_in_use_or_in_quarantine(taken, seed):
    pin = choose_pin(taken, 3, random.Random(seed))
    assert pin is not None and pin not in taken
    assert len(pin) == 3 and pin.isdigit()


def test_the_last_free_pin_is_found_when_nearly_all_are_taken():
    taken = {f"{n:03d}" for n in range(1000)} - {"007"}
    assert choose_pin(taken, 3, random.Random(1)) == "007"


def test_no_pin_when_every_pin_is_taken():
    assert choose_pin({f"{n:03d}" for n in range(1000)}, 3) is None


def test_pins_keep_their_leading_zeros():
    pins = {choose_pin(set(), 4, random.Random(seed)) for seed in range(300)}
    assert all(len(p) == 4 for p in pins)
    assert any(p.startswith("0") for p in pins)


def test_pins_are_random_not_sequential():
    rng = random.Random(42)
    taken: set[str] = set()
    for _ in range(50):
        taken.add(choose_pin(taken, 4, rng))
    ordered = sorted(int(p) for p in taken)
    assert ordered != list(range(ordered[0], ordered[0] + 50))
    assert ordered[-1] - ordered[0] > 1000  # spread over the space, not clustered


@pytest.mark.parametrize("length", [2, 9])
def test_pin_length_is_bounded(length):
    with pytest.raises(ValueError):
        pin_space(length)


# resolution

def test_a_shared_number_asks_for_the_pin_before_anything_else():
    assert isinstance(resolve_route(RouteLookup(True, (), pin_mode=True), None, NOW), AskPin)
    assert isinstance(resolve_route(RouteLookup(False, (), pin_mode=False), CUSTOMER, NOW), Reject)


def test_each_participant_reaches_the_other():
    s = session()
    assert resolve_pin_route(PinLookup((s,)), CUSTOMER, "4821", NOW) == Connect(s, DRIVER, "a_to_b")
    assert resolve_pin_route(PinLookup((s,)), DRIVER, "4821", NOW) == Connect(s, CUSTOMER, "b_to_a")


def test_an_unknown_pin_is_wrong():
    assert resolve_pin_route(PinLookup(()), CUSTOMER, "1111", NOW) == WrongPin()


def test_a_stranger_with_a_valid_pin_is_told_only_that_it_is_wrong():
    assert resolve_pin_route(PinLookup((session(),)), STRANGER, "4821", NOW) == WrongPin()
    assert resolve_pin_route(PinLookup((session(),)), None, "4821", NOW) == WrongPin()


def test_a_stranger_learns_nothing_of_an_ended_session():
    ended = session(expires_in_hours=-1)
    assert resolve_pin_route(PinLookup((ended,)), STRANGER, "4821", NOW) == WrongPin()


def test_unknown_callers_allowed_reach_the_driver_as_the_customer_side():
    s = session(unknown_callers=True)
    assert resolve_pin_route(PinLookup((s,)), STRANGER, "4821", NOW) == Connect(s, DRIVER, "a_to_b")
    assert resolve_pin_route(PinLookup((s,)), None, "4821", NOW) == Connect(s, DRIVER, "a_to_b")
    # ... and the driver still reaches the customer.
    assert resolve_pin_route(PinLookup((s,)), DRIVER, "4821", NOW) == Connect(s, CUSTOMER, "b_to_a")


@pytest.mark.parametrize(("ended", "reason"), [
    (dict(expires_in_hours=-1), RejectReason.SESSION_EXPIRED),
    (dict(status="expired", expires_in_hours=-1), RejectReason.SESSION_EXPIRED),
    (dict(status="closed"), RejectReason.SESSION_CLOSED),
])
def test_a_participant_with_the_pin_of_an_ended_session_hears_it_ended(ended, reason):
    s = session(**ended)
    assert resolve_pin_route(PinLookup((s,)), CUSTOMER, "4821", NOW) == Reject(reason, s)


def test_the_live_session_wins_over_an_ended_one_that_held_the_pin_before():
    old = session(expires_in_hours=-30, age_hours=40)
    live = session()
    assert resolve_pin_route(PinLookup((old, live)), CUSTOMER, "4821", NOW) == Connect(live, DRIVER, "a_to_b")


def test_outside_the_purpose_window_is_rejected_as_on_a_direct_call():
    s = session(window_ends_in_hours=-0.5)
    assert resolve_pin_route(PinLookup((s,)), CUSTOMER, "4821", NOW) == Reject(RejectReason.OUTSIDE_WINDOW, s)


def test_an_anonymised_sessions_pin_reaches_nobody_even_open_to_unknown_callers():
    s = dataclasses.replace(session(unknown_callers=True, expires_in_hours=-1), participant_a=None,
                            participant_b=None)
    assert resolve_pin_route(PinLookup((s,)), STRANGER, "4821", NOW) == WrongPin()


def test_a_lookup_for_another_pin_does_not_connect():
    assert resolve_pin_route(PinLookup((session("4821"),)), CUSTOMER, "4822", NOW) == WrongPin()


# digit entry

def test_entry_completes_at_the_configured_length():
    digits, done = "", False
    for d in "4821":
        assert not done
        digits, done = pin_entered(digits, d, 4)
    assert (digits, done) == ("4821", True)


def test_hash_ends_an_entry_early_and_star_starts_again():
    assert pin_entered("48", "#", 4) == ("48", True)
    assert pin_entered("48", "*", 4) == ("", False)
    assert pin_entered("48", "A", 4) == ("48", False)


# after an entry: the dialogue both paths (ARI, FastAGI) follow

def test_a_wrong_entry_with_attempts_left_is_asked_again_saying_it_was_wrong():
    assert after_entry(WrongPin(), 1, 3, "1234") == AskAgain(wrong=True)
    assert pin_prompt(Prompts(), AskAgain(wrong=True)) == "confbridge-pin-bad&confbridge-pin"


def test_a_silent_entry_is_asked_again_without_being_called_wrong():
    assert after_entry(WrongPin(), 2, 3, "") == AskAgain(wrong=False)
    assert pin_prompt(Prompts(), AskAgain(wrong=False)) == pin_prompt(Prompts()) == "confbridge-pin"


def test_the_last_wrong_attempt_is_rejected_as_an_invalid_pin():
    assert after_entry(WrongPin(), 3, 3, "1234") == Reject(RejectReason.INVALID_PIN)
    assert after_entry(WrongPin(), 1, 1, "") == Reject(RejectReason.INVALID_PIN)


def test_an_entry_that_names_a_session_or_an_ended_one_is_final_at_any_attempt():
    connect, ended = Connect(session(), "+6598765432", "a_to_b"), Reject(RejectReason.SESSION_EXPIRED)
    assert after_entry(connect, 1, 3, "1234") is connect
    assert after_entry(ended, 2, 3, "1234") is ended
