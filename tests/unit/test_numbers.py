"""Phone numbers: E.164 validation on the way in, masking on the way out."""
import re

import phonenumbers
import pytest
from hypothesis import assume, given, settings, strategies as st

from bridge.numbering import InvalidNumber, mask_number, parse_e164, redact_text


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+6591234567", None, "+6591234567"),
        ("+65 9123 4567", None, "+6591234567"),
        ("+65-9123-4567", None, "+6591234567"),
        ("+65 (6123) 4567", None, "+6561234567"),
        ("9123 4567", "SG", "+6591234567"),
        ("+1 650-253-0000", None, "+16502530000"),
        ("+44 20 7946 0958", "SG", "+442079460958"),
        ("030 1234567", "DE", "+49301234567"),
    ],
)
def test_valid_numbers_in_any_common_spelling_become_e164(raw, region, expected):
    assert parse_e164(raw, region) == expected


@pytest.mark.parametrize("raw", ["", "   ", None])
def test_empty_number_is_invalid(raw):
    with pytest.raises(InvalidNumber):
        parse_e164(raw)


def test_overlong_input_is_rejected_before_parsing():
    with pytest.raises(InvalidNumber, match="too long"):
        parse_e164("+65 " + "9" * 40)


@pytest.mark.parametrize("raw", ["hello", "+", "+999 1234567", "not-a-number-at-all"])
def test_garbage_is_invalid(raw):
    with pytest.raises(InvalidNumber):
        parse_e164(raw)


@pytest.mark.parametrize("raw", ["+65 1234", "+65 1234 5678 9012", "+1 650 253 000", "+44 20 7946 09"])
def test_well_formed_but_unassigned_number_is_invalid(raw):
    with pytest.raises(InvalidNumber):
        parse_e164(raw)


@pytest.mark.parametrize(
    "raw", ["+65 1234", "+6512345678901", "+1 650 253 000", "+999 1234567", "+65 " + "9" * 40, "91234", "+44 20 7946 09"]
)
def test_error_message_never_repeats_the_input_digits(raw):
    digits = re.sub(r"\D", "", raw)
    with pytest.raises(InvalidNumber) as err:
        parse_e164(raw, "SG")
    assert digits not in str(err.value)
    assert raw not in str(err.value)


def test_mask_keeps_country_prefix_and_last_four_digits():
    assert mask_number("+6591234567") == "+65****4567"


def test_mask_of_a_number_without_plus_has_no_plus():
    assert mask_number("6591234567") == "65****4567"


@pytest.mark.parametrize("short", ["", "123", "+65123", None])
def test_mask_of_a_short_or_missing_number_reveals_nothing(short):
    assert mask_number(short) == "****"


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("call from +6591234567 done", "6591234567"),
        ("to +65 9123 4567.", "91234567"),
        ("to +1 (650) 253-0000 now", "6502530000"),
        ("caller=6591234567, ok", "6591234567"),
        ("national 91234567", "91234567"),
    ],
)
def test_redact_masks_plus_numbers_with_separators_and_bare_digit_runs(text, hidden):
    out = redact_text(text)
    assert hidden not in re.sub(r"\D", "", out)
    assert "****" in out


@pytest.mark.parametrize(
    "text",
    [
        "channel 1764043000.12 hung up",
        "channel:1764043000.12",
        "/ari/channels/1764043000.12/answer",
        "call 550e8400-e29b-41d4-a716-446655440000",
        "id 12345678-1234-1234-1234-123456789012",
        "at 2026-11-25T10:00:00.123456+00:00",
        "at 2026-11-25 10:00:00+08:00",
        "bound 127.0.0.1:5060, rtp 10000-10999",
        "talk 123.4 s, setup_ms=250, cause 16",
    ],
)
def test_redact_leaves_ids_timestamps_and_short_numbers_alone(text):
    assert redact_text(text) == text


@pytest.mark.parametrize("text", ["From: <sip:6591234567@carrier.example>", "dial PJSIP/6591234567@carrier-out"])
def test_redact_masks_a_bare_number_inside_a_sip_uri(text):
    assert "6591234567" not in redact_text(text)


_TYPES = [
    phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.TOLL_FREE,
]


@st.composite
def e164_numbers(draw):
    region = draw(st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)))
    example = phonenumbers.example_number_for_type(region, draw(st.sampled_from(_TYPES)))
    assume(example is not None)
    base = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    tail = draw(st.text("0123456789", min_size=2, max_size=2))
    candidate = base[:-2] + tail
    assume(phonenumbers.is_valid_number(phonenumbers.parse(candidate)))
    return candidate


@settings(max_examples=300, deadline=None)
@given(number=e164_numbers(), before=st.text(max_size=40), after=st.text(max_size=40))
def test_no_valid_number_survives_redaction_whatever_surrounds_it(number, before, after):
    digits = number[1:]
    assume(digits not in before and digits not in after)
    assert digits not in redact_text(before + number + after)


def test_a_number_with_an_extension_is_refused_not_silently_truncated():
    with pytest.raises(InvalidNumber, match="extensions"):
        parse_e164("+65 6000 0011 ext. 5")
