"""Who may sign in to the console and what they may open: one table, one helper."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from bridge.console.access import Forbidden, Principal, allowed, landing, may_sign_in, pages_for, require
from bridge.console.auth import safe_next
from bridge.console.csrf import csrf_token, same_token
from bridge.console.live import sse_event
from bridge.console.render import duration


def principal(*scopes: str) -> Principal:
    return Principal("abcd1234", "ops", frozenset(scopes), "0123456789abcdef", datetime(2030, 1, 1, tzinfo=timezone.utc))


def test_a_key_signs_in_with_the_console_scope_or_a_pages_own():
    assert may_sign_in(frozenset({"console"})) and may_sign_in(frozenset({"subjects"}))
    assert may_sign_in(frozenset({"numbers"})) and may_sign_in(frozenset({"sessions"}))
    assert not may_sign_in(frozenset({"recordings"})) and not may_sign_in(frozenset({"reveal"}))
    assert not may_sign_in(frozenset())


def test_the_console_scope_opens_the_operators_pages_but_no_personal_data_beyond_masked_numbers():
    operator = principal("console")
    assert [page for page, _, _ in pages_for(operator)] == ["live", "sessions", "pool", "webhooks"]
    for permission in ("privacy", "reveal", "recordings", "legal_hold"):
        assert not allowed(operator, permission)
        with pytest.raises(Forbidden, match="lacks the scope"):
            require(operator, permission)


def test_the_dpo_sees_the_privacy_desk_and_lands_there():
    dpo = principal("subjects")
    assert [page for page, _, _ in pages_for(dpo)] == ["privacy"]
    assert landing(dpo, "/console/live") == "/console/privacy"
    assert landing(dpo, None) == "/console/privacy"
    assert landing(principal("console"), "/console/pool") == "/console/pool"
    assert landing(principal("console"), "/console/sessions/abc") == "/console/sessions/abc"


@pytest.mark.parametrize("raw, kept", [
    ("/console/pool", "/console/pool"), ("//evil.example/console/", None), ("https://evil.example/", None),
    ("/console/sign-in", None), ("/consolex", None), ("/console/\\evil", None), (None, None), ("/console/a\nb", None),
])
def test_after_sign_in_only_a_console_page_is_followed(raw, kept):
    assert safe_next(raw) == kept


def test_a_csrf_token_is_the_sign_ins_own_and_does_not_give_the_cookie_away():
    token = "cookie-token"
    assert same_token(csrf_token(token), csrf_token(token))
    assert not same_token(csrf_token(token), csrf_token("another sign-in"))
    assert not same_token(csrf_token(token), None) and not same_token("", "")
    assert token not in csrf_token(token)


def test_a_fragment_travels_as_one_server_sent_event_of_many_data_lines():
    assert sse_event("calls", "<tr>\n<td>1</td>\n</tr>") == b"event: calls\ndata: <tr>\ndata: <td>1</td>\ndata: </tr>\n\n"
    assert sse_event("calls", "") == b"event: calls\ndata: \n\n"


def test_durations_read_as_minutes_and_seconds():
    assert [duration(s) for s in (0, 9, 75, 3725, None)] == ["0s", "9s", "1m 15s", "1h 02m 05s", "–"]
