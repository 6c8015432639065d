"""Free text (audit reasons, request notes, log values) keeps no phone number in
any way people write one, and keeps everything that only looks numeric."""
from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bridge.numbering import redact_text


def digits(text: str) -> str:
    return re.sub(r"\D", "", text)


@pytest.mark.parametrize(("text", "number"), [
    ("customer 9123 4567 called twice", "91234567"),
    ("customer 91-23-45-67 called twice", "91234567"),
    ("customer +65 9123 4567 called twice", "6591234567"),
    ("customer (65) 9123-4567 called twice", "6591234567"),
    ("reached on 9123-4567.", "91234567"),
    ("reached on 91234567.", "91234567"),
    ("numbers: 9123 4567, 8765 4321", "91234567"),
    ("JP 090-1234-5678 per ticket", "09012345678"),
    ("RU 8 (912) 345-67-89 per ticket", "89123456789"),
    ("UK 0121 234 5678", "01212345678"),
    ("FR 01 23 45 67 89", "0123456789"),
])
def test_a_number_in_a_local_format_is_masked_in_free_text(text, number):
    out = redact_text(text)

    assert number not in digits(out)
    assert "****" in out


def test_both_numbers_of_a_note_are_masked_and_the_words_kept():
    out = redact_text("A is 9123 4567, B is 91-23-45-67; both agreed")

    assert out.startswith("A is ") and out.endswith("; both agreed")
    assert "91234567" not in digits(out) and out.count("****") == 2


@pytest.mark.parametrize("text", [
    # identifiers
    "call 550e8400-e29b-41d4-a716-446655440000",
    "id 12345678-1234-1234-1234-123456789012",
    "channel 1764043000.12 hung up",
    # times and dates
    "at 2026-11-25T10:00:00.123456+00:00",
    "at 2026-11-25 10:00:00+08:00",
    "on 25-11-2026 at 10:00",
    "on 2026-11-25, reviewed 2026-12-01",
    "Date: Tue, 25 Nov 2025 10:00:00 GMT",
    # money
    "refund $1,234,567.89 approved",
    "refund SGD 1,234,567.00 approved",
    "refund SGD 1234567 approved",
    "refund S$ 12 345 678 approved",
    "refund 1234567.50 approved",
    "refund 12 345 678 SGD approved",
    # order and ticket ids
    "order #12345678 disputed",
    "order ORD-2024-000123 disputed",
    "order ORD-20240612-0042 disputed",
    "invoice INV2024000123, ticket SO-1234567",
    # ports, addresses, counts
    "bound 127.0.0.1:5060, rtp 10000-10999",
    "talk 123.4 s, setup_ms=250, cause 16",
    "steps 1 2 3 4 5 6 7 8",
])
def test_what_is_not_a_phone_number_is_left_alone(text):
    assert redact_text(text) == text


REGIONS = ["SG", "MY", "GB", "US", "FR", "AU", "IN", "JP", "DE", "ID", "RU", "HK", "CN", "BR"]
TYPES = [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]
FORMATS = [phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.INTERNATIONAL]


@st.composite
def written_numbers(draw) -> tuple[str, str]:
    """(a valid number as people write it in its country or abroad, its national significant number)."""
    region = draw(st.sampled_from(REGIONS))
    example = phonenumbers.example_number_for_type(region, draw(st.sampled_from(TYPES)))
    assume(example is not None)
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    candidate = phonenumbers.parse(e164[:-3] + draw(st.text("0123456789", min_size=3, max_size=3)))
    assume(phonenumbers.is_valid_number(candidate))
    return (phonenumbers.format_number(candidate, draw(st.sampled_from(FORMATS))),
            phonenumbers.national_significant_number(candidate))


WORDS = st.sampled_from(["", "call ", "reason: customer ", "note (", "A=", "tel "])
ENDS = st.sampled_from(["", ".", " today", ")", ", thanks", "; B agreed"])


@settings(max_examples=300, deadline=None)
@given(written=written_numbers(), before=WORDS, after=ENDS)
def test_no_written_number_survives_redaction_whatever_its_country_format(written, before, after):
    text, national = written
    assert national not in digits(redact_text(before + text + after))
