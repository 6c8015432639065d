"""The dialed number in every form carriers send, through real SIPp, Asterisk,
service and PostgreSQL: SIPp plays the carrier, writing the virtual number in
the Request-URI (sip: or tel:, with or without '+', national, behind a routing
prefix) or in the To header, and the call must reach the session's
counterpart. Whatever reads as no number hears "not in service" and gets 404,
with the call's row written.

The counterpart answers 486 at once: reaching it (its INVITE, for the right
party) is the proof, and the busy prompt is short here (a beep)."""
from __future__ import annotations

import re
from itertools import count

import pytest

from tests.integration.conftest import new_parties, query, wait_for_call_row
from tests.integration.test_masked_call import assert_no_leftovers

STRIP = "1633"  # the test carrier's routing prefix
_calls = count(1)


@pytest.fixture(scope="module")
def carrier(stack):
    """The shared stack, its service restarted with the trunk's rule set by each
    test group (`read_by`), and restored after the module."""
    def read_by(rule: str):
        stack.stop_service()
        stack.start_service(MASKING_DIALED_NUMBER_RULES=f"carrier-in: {rule}", MASKING_PROMPT_BUSY="beep",
                            MASKING_PROMPT_UNKNOWN_NUMBER="beep")
        return stack

    yield read_by
    stack.stop_service()
    stack.start_service()


@pytest.fixture(scope="module")
def request_uri_carrier(carrier):
    return carrier(f"from=ruri strip={STRIP}")


@pytest.fixture(scope="module")
def to_header_carrier(request_uri_carrier, carrier):  # after the Request-URI group: one restart each
    return carrier("from=to")


def dial(place_call, stack, caller: str, request_uri: str, to: str, final_status: int, counterpart: bool = True):
    host = stack.sip_target
    return place_call(caller, "unused", uac="uac_dialed.xml",
                      uac_values={"request_uri": request_uri.format(host=host), "to": to.format(host=host),
                                  "final_status": final_status, "tag": f"dialed{next(_calls)}-"},
                      uas="uas_status.xml" if counterpart else None,
                      uas_values={"status": 486, "reason": "Busy Here", "tag": "busy"}, uas_args=())


def assert_reached_the_counterpart(call, stack, parties):
    assert call.caller.succeeded, call.caller.output
    invite = next((m for m in call.counterpart.received() if m.startswith("INVITE")), None)
    assert invite is not None, "the counterpart was never dialed: the dialed number was not recognised"
    assert re.search(r"^To: <sip:" + re.escape(parties.b) + "@", invite, re.M), invite
    row = wait_for_call_row(stack, parties.virtual_number)
    assert row["disposition"] == "busy" and row["reject_reason"] is None
    assert_no_leftovers(stack)


@pytest.mark.parametrize("form", [
    "sip:{e164}@{host}",
    "sip:{digits}@{host}",  # E.164 without the '+': how many carriers deliver a DID
    "sip:{national}@{host}",
    f"sip:{STRIP}{{digits}}@{{host}}",
    "sip:%2B{digits}@{host};user=phone",
    "sip:{digits};npdi@{host};user=phone",
    "tel:{e164}",
], ids=["e164", "without_plus", "national", "routing_prefix", "escaped_plus", "npdi", "tel_uri"])
def test_a_virtual_number_in_the_request_uri_in_any_carrier_form_reaches_the_counterpart(
        request_uri_carrier, place_call, form):
    stack = request_uri_carrier
    parties = new_parties(stack, record=False)
    e164 = parties.virtual_number
    request_uri = form.format(e164=e164, digits=e164[1:], national=e164[3:], host="{host}")

    call = dial(place_call, stack, parties.a, request_uri, f"<{request_uri}>", 486)

    assert_reached_the_counterpart(call, stack, parties)


@pytest.mark.parametrize(("request_uri", "row_number"), [
    ("sip:sales@{host}", "sales"),
    ("sip:{host}", "s"),  # no user part at all
    ("sip:6569990000@{host}", "+6569990000"),  # a number, not in the pool
    ("sip:%C3%A9t%C3%A9@{host}", "\u00e9t\u00e9"),  # not even ASCII
], ids=["letters", "no_user_part", "not_in_pool", "not_ascii"])
def test_a_dialed_number_that_is_none_or_not_ours_hears_not_in_service_and_gets_404_with_a_row(
        request_uri_carrier, place_call, request_uri, row_number):
    stack = request_uri_carrier
    parties = new_parties(stack, record=False)

    call = dial(place_call, stack, parties.a, request_uri, "<sip:x@{host}>", 404, counterpart=False)

    assert call.caller.succeeded, call.caller.output  # 404, after the prompt
    assert any(m.startswith("SIP/2.0 183") for m in call.caller.received()), "no early media for the prompt"
    assert call.caller_rtp.level > 100, "the caller heard no prompt"
    rows = query(stack.dsn, "SELECT * FROM calls WHERE virtual_number = $1", row_number)
    assert [(r["disposition"], r["reject_reason"], r["callee_channel_id"]) for r in rows] == \
        [("rejected", "unknown_number", None)]
    assert_no_leftovers(stack)


@pytest.mark.parametrize("to", [
    "<tel:{e164}>",
    "<tel:{national};phone-context=+65>",
    '"Hotline, SG" <sip:{digits}@{{host}};user=phone>',
], ids=["tel_e164", "tel_local_with_context", "sip_with_display_name"])
def test_a_trunk_that_sends_the_number_in_the_to_header_is_read_there(to_header_carrier, place_call, to):
    stack = to_header_carrier
    parties = new_parties(stack, record=False)
    e164 = parties.virtual_number

    # The Request-URI carries the carrier's own routing label, not the number.
    call = dial(place_call, stack, parties.a, "sip:trunk-route-7@{host}",
                to.format(e164=e164, digits=e164[1:], national=e164[3:]), 486)

    assert_reached_the_counterpart(call, stack, parties)
