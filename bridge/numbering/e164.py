"""Phone numbers in E.164: strictly, from people and the API (`parse_e164`),
and leniently, in the forms carriers deliver them in signalling (`to_e164`)."""
from __future__ import annotations

import re

import phonenumbers

MAX_LENGTH = 32  # characters; longer input is refused before phonenumbers sees it
# What may separate a number's digits: the visual separators of RFC 3966 and spaces.
_SEPARATORS = re.compile(r"[\s().-]")
_SIGNALLED = re.compile(r"\+?\d+")


class InvalidNumber(ValueError):
    """Not a valid phone number; the message never repeats the input."""


def parse_e164(raw: str, default_region: str | None = None) -> str:
    """Return the E.164 form of `raw`, or raise InvalidNumber.

    >>> parse_e164("+65 6123 4567")
    '+6561234567'
    >>> parse_e164("9123 4567", "SG")
    '+6591234567'
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidNumber("phone number is empty")
    if len(raw) > MAX_LENGTH:
        raise InvalidNumber("phone number is too long")
    try:
        parsed = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        raise InvalidNumber(
            "not a phone number in E.164 form (+ country code and number)"
        ) from None
    if parsed.extension:
        raise InvalidNumber("phone number extensions are not supported")
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber(
            f"not a valid phone number for country code +{parsed.country_code}"
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def to_e164(raw: str | None, region: str) -> str | None:
    """A number as a carrier signals it, in E.164; None when it is no valid number.

    Carriers send E.164 with or without the '+', the national form of their
    country (`region`), or an international prefix (`00`, or the region's
    own); digits only, visual separators aside. Digits that read as valid
    numbers more than one way (`006597300000` in Singapore: `00` then +65, or
    the local prefix `006` then +597) are read as the number in the carrier's
    own country. Letters are never read as a vanity number: `anonymous` is no
    number, nor is `1-800-FLOWERS`.

    >>> [to_e164(n, "SG") for n in ("+6560000001", "6560000001", "60000001", "006560000001", "s")]
    ['+6560000001', '+6560000001', '+6560000001', '+6560000001', None]
    """
    if not raw or len(raw) > MAX_LENGTH:
        return None
    text = _SEPARATORS.sub("", raw)
    if not _SIGNALLED.fullmatch(text):
        return None
    candidates = [text] if text.startswith("+") else \
        [text, "+" + text, *(["+" + text[2:]] if text.startswith("00") else [])]
    readings = []
    for candidate in candidates:
        try:
            readings.append(parse_e164(candidate, region))
        except InvalidNumber:
            continue
    home = f"+{phonenumbers.country_code_for_region(region)}"
    return next((n for n in readings if n.startswith(home)), readings[0] if readings else None)
