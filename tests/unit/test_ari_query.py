"""The ARI client's query strings (bridge/ari/client.py `_query`): what
urlencode with `quote` would write, without its per-character cost."""
from urllib.parse import quote, urlencode

from hypothesis import given, strategies as st

from bridge.ari.client import _query, _query_value

VALUES = st.one_of(st.none(), st.text(), st.integers(), st.booleans())
KEYS = st.one_of(st.sampled_from(["media", "playbackId", "endpoint", "reason_code"]), st.text())


@given(st.dictionaries(KEYS, VALUES))
def test_a_query_is_what_urlencode_writes_with_none_left_out(params):
    expected = urlencode({k: _query_value(v) for k, v in params.items() if v is not None}, quote_via=quote,
                         safe=",:@")
    assert _query(params) == expected


def test_what_a_call_sends_is_left_as_it_is_and_the_rest_is_quoted():
    assert _query({"media": "sound:beep,tone:ring", "playbackId": "a1-b2", "x": None}) == \
        "media=sound:beep,tone:ring&playbackId=a1-b2"
    assert _query({"endpoint": "PJSIP/+65 6000@out", "on": True}) == "endpoint=PJSIP%2F%2B65%206000@out&on=true"
