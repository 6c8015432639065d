"""Attack: guessing a shared number's PINs by calling again and again.

Three tries per call used to be the only bound, so a caller could guess a
4-digit PIN over a few thousand calls. Wrong PINs now count across calls: a
caller past the limit is locked out (backoff), and a number guessed at by
many callers takes PINs only from its sessions' participants. Counted on
the caller's side of the wire: the prompts heard (pure tones), the final
status, and whether anyone was dialed."""
from __future__ import annotations

import pytest

from bridge.recordings.wait_audio import sounds_dir
from tests.integration.test_endings import install_prompts
from tests.integration.test_masked_call import assert_no_leftovers
from tests.integration.test_pin_calls import connect_with_pin, key_in, shared_number, wrong_pins
from tests.integration.test_pin_paths import assert_row, heard


@pytest.fixture(scope="module")
def guarded(stack):
    """The stack with tone prompts and small limits: 3 wrong PINs lock a caller, 5 a number."""
    stack.stop_service()
    stack.start_service(**install_prompts(sounds_dir(stack.settings) / "endings"), MASKING_PIN_DIGIT_TIMEOUT="1",
                        MASKING_PIN_CALLER_FAILURES="3", MASKING_PIN_NUMBER_FAILURES="5")
    yield stack
    stack.stop_service()
    stack.start_service()


def guess(place_call, caller: str, number: str, pins: str, tmp_path, final_status: str = "403"):
    return place_call(caller, number, uac="uac_pin.xml",
                      uac_values={"pcap": key_in(tmp_path, pins), "final_status": final_status,
                                  "final_next": "rejected" if final_status != "200" else "connected"})


def test_a_caller_guessing_across_calls_is_locked_out_and_even_the_right_pin_then_fails(
        guarded, place_call, tmp_path):
    number, driver, (session,) = shared_number(guarded, customers=1)
    wrong = wrong_pins({session.pin}, 3)

    first = guess(place_call, session.participant_a, number, wrong[0] + wrong[1], tmp_path)  # 2 wrong, then silence
    second = guess(place_call, session.participant_a, number, wrong[2], tmp_path)  # the 3rd across calls
    right = guess(place_call, session.participant_a, number, session.pin, tmp_path)

    assert first.caller.succeeded and second.caller.succeeded and right.caller.succeeded, right.caller.output
    rejected = right.caller.first("received", "SIP/2.0 403")
    assert heard(right, "PIN_REQUEST", until=rejected) == 0, "a locked-out caller was asked for a PIN"
    assert heard(right, "PIN_FAILED", until=rejected) > 35, "no closing prompt"
    assert not any(m.startswith("SIP/2.0 200") for m in right.caller.received())
    assert_row(guarded, number, "ari", disposition="rejected", reject_reason="pin_locked", callee_channel_id=None,
               pin_attempts=0)
    assert_no_leftovers(guarded)


def test_a_number_guessed_at_by_many_callers_takes_pins_only_from_its_participants(
        guarded, place_call, tmp_path):
    number, driver, (session,) = shared_number(guarded, customers=1, unknown_callers=True)
    wrong = wrong_pins({session.pin}, 3)
    for n, strangers_guess in enumerate((wrong[0] + wrong[1], wrong[2] + wrong[0], wrong[1])):
        guess(place_call, f"+659998{n:04d}", number, strangers_guess, tmp_path)  # 5 wrong from 3 strangers

    stranger = guess(place_call, "+6599989999", number, session.pin, tmp_path)
    participant = connect_with_pin(place_call, session.participant_a, number, session.pin, tmp_path)

    assert stranger.caller.succeeded, stranger.caller.output
    assert not any(m.startswith("SIP/2.0 200") for m in stranger.caller.received()), "a stranger got through"
    assert participant.caller.succeeded and participant.counterpart.succeeded, participant.caller.output
    assert_no_leftovers(guarded)
