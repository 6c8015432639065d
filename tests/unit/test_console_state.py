"""The console's decisions from data alone: a live call's state, today's
outcomes, a subject request's urgency, the pool chart's columns."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bridge.console.state import Due, call_state, day_start, due, live_call, node_name, outcomes, pool_series, utilisation

NOW = datetime(2026, 3, 4, 10, 0, tzinfo=timezone.utc)


def call(**fields) -> dict:
    return {"id": "c1", "session_id": "s1", "virtual_number": "+6560000001", "started_at": NOW - timedelta(seconds=90),
            "kind": "inbound", "path": "ari", "asterisk_node": "http://127.0.0.1:8088/masking", **fields}


@pytest.mark.parametrize("fields, state", [
    ({"answered_at": NOW}, "talking"),
    ({"ringing_at": NOW, "callee_channel_id": "x"}, "ringing"),
    ({"callee_channel_id": "x"}, "dialing"),
    ({"session_records": True}, "notice"),
    ({"session_records": False}, "setup"),
    ({"session_id": None}, "pin"),
    ({"kind": "connect"}, "ringing"),
    ({"kind": "connect", "caller_answered_at": NOW, "callee_channel_id": "x"}, "dialing"),
])
def test_a_live_calls_state_follows_its_row(fields, state):
    assert call_state(call(**fields)) == state


def test_a_live_call_shows_how_long_it_has_lasted_and_talked_and_where():
    shown = live_call(call(answered_at=NOW - timedelta(seconds=30)), NOW)
    assert (shown.seconds, shown.talk_seconds, shown.label) == (90, 30, "Talking")
    assert shown.node == "127.0.0.1:8088/masking" and shown.path == "ari"
    assert live_call(call(), NOW).talk_seconds is None
    assert node_name(None) == "–"


def test_today_starts_at_midnight_utc_whatever_the_callers_zone():
    late = datetime(2026, 3, 4, 23, 30, tzinfo=timezone(timedelta(hours=-5)))  # 04:30 UTC on the 5th
    assert day_start(late) == datetime(2026, 3, 5, tzinfo=timezone.utc)


def test_outcomes_group_as_an_operator_reads_them():
    counts = outcomes({"answered": 5, "time_limit": 1, "busy": 2, "failed": 1, "interrupted": 1, "rejected": 3})
    assert counts["answered"] == 6 and counts["busy"] == 2 and counts["failed"] == 2 and counts["rejected"] == 3
    assert counts["no_answer"] == 0


@pytest.mark.parametrize("due_at, urgency, text", [
    (NOW - timedelta(days=3, hours=1), "overdue", "overdue by 3 days"),
    (NOW - timedelta(days=1), "overdue", "overdue by 1 day"),
    (NOW - timedelta(hours=2), "overdue", "overdue by hours"),
    (NOW + timedelta(hours=5), "soon", "due today"),
    (NOW + timedelta(days=1, hours=1), "soon", "due in 1 day"),
    (NOW + timedelta(days=20), "later", "due in 20 days"),
])
def test_an_open_subject_requests_deadline_reads_in_words(due_at, urgency, text):
    assert due("open", due_at, NOW) == Due(urgency, text)


def test_a_closed_request_is_never_overdue():
    assert due("done", NOW - timedelta(days=40), NOW).urgency == "closed"


def test_the_pool_chart_ends_with_the_pool_as_it_is_now():
    samples = [{"at": NOW - timedelta(hours=1), "in_use": 2, "active": 10, "quarantined": 1}]
    series = pool_series(samples, {"in_use": 3, "active": 11, "quarantined": 0}, NOW)
    assert series == {"t": [int((NOW - timedelta(hours=1)).timestamp()), int(NOW.timestamp())],
                      "in_use": [2, 3], "active": [10, 11], "quarantined": [1, 0]}
    assert utilisation({"in_use": 3, "active": 12}) == 0.25 and utilisation({"in_use": 0, "active": 0}) is None
