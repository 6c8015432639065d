"""Carrying on a call a dead process left in setup: which calls can be, the
route they were admitted on, and the notices their row says were heard."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

from bridge.calls.resume import notices_in, resumable, route_of
from bridge.sessions.models import MaskingSession


def session() -> MaskingSession:
    now = datetime.now(timezone.utc)
    return MaskingSession(uuid.uuid4(), "+6560000001", "+6591234567", "+6598765432", "active", True,
                          now - timedelta(minutes=1), now + timedelta(hours=1))


def test_an_inbound_call_with_its_session_and_direction_can_be_carried_on():
    assert resumable({"direction": "a_to_b", "kind": "inbound"}, session())


def test_a_call_in_pin_entry_or_without_a_session_or_a_click_to_call_cannot():
    assert not resumable({"direction": None, "kind": "inbound"}, session())  # PIN entry: no direction yet
    assert not resumable({"direction": "a_to_b", "kind": "inbound"}, None)
    assert not resumable({"direction": "a_to_b", "kind": "connect"}, session())


def test_the_route_dials_the_other_participant_showing_their_virtual_number():
    s = session()
    a_calls = route_of(s, "a_to_b")
    assert a_calls.counterpart == s.participant_b and a_calls.direction == "a_to_b"
    assert route_of(s, "b_to_a").counterpart == s.participant_a
    assert a_calls.caller_id not in (s.participant_a, s.participant_b)


def test_notices_in_the_row_come_back_as_evidence_whether_text_or_decoded():
    heard = [{"party": "caller", "notice_id": "recording-notice", "version": "1",
              "started_at": "2026-01-01T00:00:00+00:00", "ended_at": "2026-01-01T00:00:03+00:00",
              "completed": True, "opted_out": False}]
    for stored in (json.dumps(heard), heard):
        [notice] = notices_in({"notices": stored})
        assert notice.party == "caller" and notice.completed and not notice.opted_out
        assert notice.to_json() == heard[0]
    assert notices_in({"notices": None}) == []
