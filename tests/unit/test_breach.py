"""A breach's clocks and thresholds (PDPA s26B-D), as pure functions."""
from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from bridge.privacy.breach import (SIGNIFICANT_SCALE, Incident, assessment_due, closing_problems, draft_notification,
                                   notifiable, pdpc_due)

AWARE = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


def incident(**fields) -> Incident:
    base = Incident(id=uuid.uuid4(), title="API key leaked", aware_at=AWARE, assess_due_at=assessment_due(AWARE),
                    status="open", opened_by="cli:dpo")
    return replace(base, **fields)


def test_the_assessment_is_due_thirty_days_after_awareness():
    assert assessment_due(AWARE) == AWARE + timedelta(days=30)


@pytest.mark.parametrize("assessed, due", [
    # Monday 10:00 in Singapore: due at the end of Thursday, Singapore time.
    (datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc), datetime(2026, 3, 5, 16, 0, tzinfo=timezone.utc)),
    # 23:30 UTC on the 2nd is already the 3rd in Singapore: its three days count from the 3rd.
    (datetime(2026, 3, 2, 23, 30, tzinfo=timezone.utc), datetime(2026, 3, 6, 16, 0, tzinfo=timezone.utc)),
    # Calendar days: a weekend and a month's end count like any other day.
    (datetime(2026, 2, 27, 5, 0, tzinfo=timezone.utc), datetime(2026, 3, 2, 16, 0, tzinfo=timezone.utc)),
])
def test_the_pdpc_is_due_by_the_end_of_the_third_calendar_day_in_singapore_after_the_assessment(assessed, due):
    assert pdpc_due(assessed) == due


def test_five_hundred_affected_individuals_make_a_breach_notifiable_without_significant_harm():
    assert SIGNIFICANT_SCALE == 500
    assert not notifiable(499, significant_harm=False)
    assert notifiable(500, significant_harm=False)
    assert notifiable(1, significant_harm=True)
    with pytest.raises(ValueError):
        notifiable(-1, significant_harm=False)


def test_an_unassessed_incident_is_overdue_only_after_thirty_days():
    fresh = incident()
    assert fresh.overdue_clocks(AWARE + timedelta(days=29)) == []
    assert fresh.overdue_clocks(AWARE + timedelta(days=30, seconds=1)) == ["incident_assessment"]
    assessed = replace(fresh, status="assessed", assessed_at=AWARE + timedelta(days=31), notifiable=False)
    assert assessed.overdue_clocks(AWARE + timedelta(days=60)) == []


def test_a_notifiable_incident_is_overdue_until_the_pdpc_is_notified():
    at = AWARE + timedelta(days=2)
    notifiable_one = incident(status="assessed", assessed_at=at, notifiable=True, pdpc_due_at=pdpc_due(at))
    late = pdpc_due(at) + timedelta(minutes=1)
    assert notifiable_one.overdue_clocks(pdpc_due(at) - timedelta(minutes=1)) == []
    assert notifiable_one.overdue_clocks(late) == ["incident_pdpc_notification"]
    assert replace(notifiable_one, pdpc_notified_at=late).overdue_clocks(late + timedelta(days=9)) == []
    assert replace(notifiable_one, status="closed", closed_at=late).overdue_clocks(late) == []


def test_closing_needs_an_assessment_and_for_a_notifiable_breach_both_notifications_or_an_exemption():
    at = AWARE + timedelta(days=1)
    assert "not assessed" in " ".join(closing_problems(incident()))
    assessed = incident(status="assessed", assessed_at=at, notifiable=True, pdpc_due_at=pdpc_due(at))
    assert len(closing_problems(assessed)) == 2
    told = replace(assessed, pdpc_notified_at=at, individuals_notified_at=at)
    assert closing_problems(told) == []
    exempt = replace(assessed, pdpc_notified_at=at, individuals_exemption="keys revoked before any use (s26D(5))")
    assert closing_problems(exempt) == []
    assert closing_problems(incident(status="assessed", assessed_at=at, notifiable=False)) == []


def test_the_draft_holds_counts_and_times_but_no_number_even_one_typed_into_a_note():
    at = AWARE + timedelta(days=1)
    draft = draft_notification(
        incident(title="key of +6591234567's team leaked", status="assessed", assessed_at=at, notifiable=True,
                 pdpc_due_at=pdpc_due(at), affected=612, affected_source="ledger", significant_harm=False,
                 scope_actor="apikey:abcd1234", scope_from=AWARE - timedelta(days=3), scope_until=AWARE,
                 notes="called back 91234567"),
        {"session.read": 1224, "recording.read": 3}, at)

    assert "612 (significant scale: 500 or more)" in draft
    assert "call recordings" in draft and "session.read: 1224" in draft
    assert "2026-03-06 23:59" not in draft and "2026-03-07 00:00 SGT" in draft  # due: the 3rd day's end
    assert "6591234567" not in draft and "91234567" not in draft and "+65****4567" in draft
