"""Numbers as carriers deliver them: the caller's, and the virtual number a
caller dialed, in every form a trunk sends, read by that trunk's rule."""
from __future__ import annotations

from urllib.parse import quote

import phonenumbers
import pytest
from hypothesis import given, strategies as st

from bridge.calls.arrival import arrival, trunk_of
from bridge.config import ConfigError, DialedRule, Settings, parse_dialed_rules
from bridge.numbering import dialed_number, to_e164, uri_number

VIRTUAL = "+6560000001"
RURI = DialedRule()
TO = DialedRule(source="to")


# -- numbers in signalling --------------------------------------------------------

@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+6591234567", "+6591234567"),
        ("91234567", "+6591234567"),
        ("9123 4567", "+6591234567"),
        ("6591234567", "+6591234567"),
        ("16502530000", "+16502530000"),
        ("442079460958", "+442079460958"),
        ("00442079460958", "+442079460958"),
        ("0016591234567", "+6591234567"),  # not +1 659...: the carrier's own country wins
        ("006597300000", "+6597300000"),  # not the local prefix 006 and Suriname's +597 300000
    ],
)
def test_a_number_in_e164_national_or_international_form_is_read_as_e164(raw, expected):
    assert to_e164(raw, "SG") == expected


@pytest.mark.parametrize("raw", ["", "anonymous", "Restricted", "unknown", "12", "+0000000", None, "s",
                                 "1-800-FLOWERS", "+65 6000 0001 ext 12", "9" * 40])
def test_anonymous_empty_garbled_or_lettered_input_is_no_number(raw):
    assert to_e164(raw, "SG") is None


# -- where the number is ----------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("+6560000001", "+6560000001"),
        ("6560000001;npdi;rn=+6599990000", "6560000001"),
        ("%2B6560000001", "+6560000001"),
        ("<sip:+6560000001@carrier.example;user=phone>", "+6560000001"),
        ('"Shop, SG" <sip:6560000001@carrier.example:5060;user=phone>;tag=abc', "6560000001"),
        ("sips:60000001@carrier.example", "60000001"),
        ("<tel:+65-6000-0001>", "+65-6000-0001"),
        ("tel:6000-0001;phone-context=+65", "+656000-0001"),
        ("<tel:60000001;phone-context=carrier.example>", "60000001"),
        ("<sip:60000001;phone-context=+65@carrier.example;user=phone>", "+6560000001"),
        ("<sip:carrier.example>", ""),
        ("", ""),
    ],
)
def test_the_number_is_found_in_a_user_part_a_sip_or_tel_uri_or_a_to_header(text, number):
    assert uri_number(text) == number


# -- the dialed number, by the trunk's rule ----------------------------------------

@pytest.mark.parametrize("request_user", [
    "+6560000001", "6560000001", "60000001", "006560000001", "+65-6000-0001", "%2B6560000001",
    "6560000001;npdi", "+6560000001;rn=+6599990000;npdi",
])
def test_the_request_uri_user_part_in_any_carrier_form_reads_as_the_pool_number(request_user):
    assert dialed_number(request_user, "", RURI, "SG") == VIRTUAL


@pytest.mark.parametrize("to_header", [
    "<tel:+6560000001>", "<tel:6560000001>", "<tel:60000001;phone-context=+65>", "tel:+65-6000-0001",
    "<sip:60000001@carrier.example;user=phone>", '"Virtual" <sip:+6560000001@carrier.example>',
])
def test_a_trunk_that_says_so_is_read_from_the_to_header_whatever_the_request_uri_holds(to_header):
    assert dialed_number("trunk-route-17", to_header, TO, "SG") == VIRTUAL


def test_a_carriers_routing_prefix_is_stripped_before_reading():
    rule = DialedRule(strip="1633")
    assert dialed_number("16336560000001", "", rule, "SG") == VIRTUAL
    assert dialed_number("163360000001", "", rule, "SG") == VIRTUAL
    assert dialed_number("6560000001", "", rule, "SG") == VIRTUAL, "a number without the prefix is read as it is"


def test_national_numbers_belong_to_the_trunks_region_or_else_the_default_one():
    assert dialed_number("0321234567", "", DialedRule(region="MY"), "SG") == "+60321234567"
    assert dialed_number("60000001", "", DialedRule(), "SG") == VIRTUAL


@pytest.mark.parametrize("request_user", ["s", "", "abc", "sales", "*21#", "123", "+", "65600000019999999999"])
def test_what_reads_as_no_number_is_none(request_user):
    assert dialed_number(request_user, "", RURI, "SG") is None


SG_NUMBERS = st.builds(lambda kind, digits: f"+65{kind}{digits:07d}", st.sampled_from("689"),
                       st.integers(0, 9_999_999)).filter(lambda n: phonenumbers.is_valid_number(phonenumbers.parse(n)))


def carrier_forms(number: str) -> list[tuple[str, str, DialedRule]]:
    """(Request-URI user, To header, rule) for each way a carrier may deliver `number`."""
    digits, national = number[1:], number[3:]
    spaced = f"+65 {national[:4]}-{national[4:]}"
    return [
        (number, "", RURI), (digits, "", RURI), (national, "", RURI), ("00" + digits, "", RURI),
        (quote(number), "", RURI), (spaced, "", RURI), (f"{digits};npdi", "", RURI),
        ("1633" + digits, "", DialedRule(strip="1633")), ("1633" + national, "", DialedRule(strip="1633")),
        ("s", f"<tel:{number}>", TO), ("s", f"<tel:{national};phone-context=+65>", TO),
        ("routing", f'"x" <sip:{digits}@carrier.example;user=phone>;tag=1', TO),
        ("routing", f"<sip:{national}@carrier.example>", TO),
    ]


@given(SG_NUMBERS)
def test_every_form_a_carrier_sends_reads_as_the_same_e164_number(number):
    for request_user, to_header, rule in carrier_forms(number):
        assert dialed_number(request_user, to_header, rule, "SG") == number, (request_user, to_header, rule)


@given(st.text(max_size=80), st.text(max_size=80), st.sampled_from([RURI, TO, DialedRule(strip="00")]))
def test_any_text_reads_as_a_valid_e164_number_or_none_and_never_raises(request_user, to_header, rule):
    number = dialed_number(request_user, to_header, rule, "SG")
    assert number is None or (number.startswith("+") and phonenumbers.is_valid_number(phonenumbers.parse(number)))


# -- rules per trunk ----------------------------------------------------------------

def test_rules_are_read_per_trunk_with_a_default_for_any_other():
    settings = Settings.from_env({"MASKING_DIALED_NUMBER_RULES": "carrier-in: from=to strip=1633; *: region=MY"})
    assert settings.dialed_rule("carrier-in") == DialedRule(source="to", strip="1633")
    assert settings.dialed_rule("carrier-b") == DialedRule(region="MY")
    assert Settings().dialed_rule("carrier-in") == DialedRule()


@pytest.mark.parametrize("raw", ["carrier-in from=to", "carrier-in: from=header", "carrier-in: strip=abc",
                                 "carrier-in: region=XX", "carrier-in: colour=red", "a: from=to; a: from=ruri",
                                 "bad name: from=to", "carrier-in: from"])
def test_a_malformed_rule_is_refused_at_start_naming_the_setting(raw):
    with pytest.raises(ConfigError, match="MASKING_DIALED_NUMBER_RULES"):
        Settings.from_env({"MASKING_DIALED_NUMBER_RULES": raw})


def test_an_unknown_default_region_is_refused_at_start():
    with pytest.raises(ConfigError, match="MASKING_DEFAULT_REGION"):
        Settings.from_env({"MASKING_DEFAULT_REGION": "Singapore"})


def test_an_empty_rule_list_means_the_request_uri_everywhere():
    assert parse_dialed_rules("") == {} and parse_dialed_rules(" ; ") == {}


# -- what the dialplan hands over ---------------------------------------------------

def test_the_dialplans_arguments_give_the_trunk_and_the_url_encoded_to_header():
    settings = Settings.from_env({"MASKING_DIALED_NUMBER_RULES": "carrier-b: from=to"})
    arrived = arrival(("s", "carrier-b", quote('"Shop, SG" <tel:+6560000001>', safe="")), "PJSIP/x-00000001",
                      settings)
    assert (arrived.virtual_number, arrived.trunk, arrived.row_number) == (VIRTUAL, "carrier-b", VIRTUAL)


def test_a_caller_served_late_with_the_exten_alone_is_read_by_its_channels_trunk():
    settings = Settings.from_env({"MASKING_DIALED_NUMBER_RULES": "carrier-in: strip=1633"})
    arrived = arrival(("16336560000001",), "PJSIP/carrier-in-0000002a", settings)
    assert (arrived.virtual_number, arrived.trunk) == (VIRTUAL, "carrier-in")


def test_an_unreadable_number_keeps_what_was_sent_for_the_calls_row():
    arrived = arrival(("sales-line", "carrier-in", ""), "PJSIP/carrier-in-0000002a", Settings())
    assert arrived.virtual_number is None and arrived.row_number == "sales-line"
    assert len(arrival(("x" * 500, "carrier-in", ""), "", Settings()).row_number) == 64


@pytest.mark.parametrize(("name", "trunk"), [("PJSIP/carrier-in-0000002a", "carrier-in"),
                                             ("PJSIP/carrier-out-00000000", "carrier-out"), ("Local/x@y-1;1", "")])
def test_the_trunk_of_a_channel_is_its_pjsip_endpoint(name, trunk):
    assert trunk_of(name) == trunk
