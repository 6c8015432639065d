"""Subject access, the pure parts: what an export holds, redaction, deadlines."""
from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from bridge.privacy.audit import AuditEntry
from bridge.privacy.subject_access import (
    REDACTED, SCHEMA_VERSION, SubjectHoldings, SubjectRequest, clean_notes, documents, due_at, encode, manifest,
    number_spellings, received_at, scrub,
)
from bridge.sessions.models import MaskingSession

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
SUBJECT, OTHER = "+6591234567", "+6587654321"
HASH = bytes(32)


def session(a: str = SUBJECT, b: str = OTHER, **extra) -> MaskingSession:
    return MaskingSession(id=uuid.uuid4(), virtual_number="+6561000001", participant_a=a, participant_b=b,
                          status="active", record=True, created_at=NOW - timedelta(days=2),
                          expires_at=NOW - timedelta(days=1), purpose="delivery_order", **extra)


def call_row(s: MaskingSession, direction: str = "a_to_b", **extra) -> dict:
    return {"id": uuid.uuid4(), "session_id": s.id, "virtual_number": s.virtual_number, "direction": direction,
            "disposition": "answered", "started_at": NOW - timedelta(days=2), "talk_seconds": 12.5,
            "recorded": True, "notices": '[{"party": "caller", "completed": true}]', **extra}


def recording_row(call: dict) -> dict:
    return {"id": uuid.uuid4(), "call_id": call["id"], "session_id": call["session_id"], "format": "wav",
            "bytes": 1000, "duration_seconds": 1.5, "sha256": "0" * 64, "created_at": NOW, "sealed": True,
            "shredded_at": None, "storage_path": "/secret/place.wav"}


def entry(seq: int, **extra) -> AuditEntry:
    fields = {"actor": "apikey:ab12:crm", "action": "recording.read", "target_type": "recording",
              "target_id": str(uuid.uuid4()), "source": "10.0.0.9", **extra}
    return AuditEntry(seq=seq, at=NOW - timedelta(days=seq), **fields)


def holdings(*sessions: MaskingSession, calls=(), recordings=(), disclosures=()) -> SubjectHoldings:
    return SubjectHoldings(SUBJECT, HASH, tuple(sessions), tuple(calls), tuple(recordings), tuple(disclosures))


def test_sessions_show_the_subject_their_own_number_and_the_other_party_only_by_role_and_mask():
    as_a, as_b = session(), session(a=OTHER, b=SUBJECT)

    docs = documents(holdings(as_a, as_b), NOW, {})

    first, second = docs["sessions.json"]
    assert (first["your_role"], first["your_number"], first["counterpart"]) == \
        ("a", SUBJECT, {"role": "b", "number": "+65****4321"})
    assert (second["your_role"], second["counterpart"]["role"]) == ("b", "a")
    assert first["status"] == "expired" and first["purpose"] == "delivery_order"


def test_calls_say_whether_the_subject_dialed_and_recordings_never_say_where_they_are_stored():
    as_b = session(a=OTHER, b=SUBJECT)
    dialed, was_dialed = call_row(as_b, "b_to_a"), call_row(as_b, "a_to_b")
    recording = recording_row(dialed)

    docs = documents(holdings(as_b, calls=[dialed, was_dialed], recordings=[recording]), NOW,
                     {recording["id"]: ("included", f"audio/{recording['id']}.wav")})

    assert [c["you_were"] for c in docs["calls.json"]] == ["caller", "callee"]
    assert docs["calls.json"][0]["notices"] == [{"party": "caller", "completed": True}]
    (meta,) = docs["recordings.json"]
    assert meta["audio"] == "included" and meta["file"] == f"audio/{recording['id']}.wav"
    assert "storage_path" not in meta and "/secret/place.wav" not in json.dumps(docs)


X_A, X_B = "+6561000001", "+6561000002"


def test_under_per_participant_caller_id_each_subject_sees_only_the_virtual_number_they_hold():
    as_a = session(caller_id_policy="per_participant", virtual_number_b=X_B)
    as_b = session(a=OTHER, b=SUBJECT, caller_id_policy="per_participant", virtual_number_b=X_B)
    # Rows hold the number dialed: X_A when A called, X_B when B did.
    calls_a = [call_row(as_a, "a_to_b"), call_row(as_a, "b_to_a", virtual_number=X_B)]
    calls_b = [call_row(as_b, "a_to_b"), call_row(as_b, "b_to_a", virtual_number=X_B)]

    docs_a = documents(holdings(as_a, calls=calls_a), NOW, {})
    docs_b = documents(holdings(as_b, calls=calls_b), NOW, {})

    assert [d["virtual_number"] for d in docs_a["sessions.json"] + docs_a["calls.json"]] == [X_A] * 3
    assert [d["virtual_number"] for d in docs_b["sessions.json"] + docs_b["calls.json"]] == [X_B] * 3
    assert [c["you_were"] for c in docs_b["calls.json"]] == ["callee", "caller"]
    assert all(s not in json.dumps(docs_a) for s in number_spellings(X_B))
    assert all(s not in json.dumps(docs_b) for s in number_spellings(X_A))


def test_the_other_partys_virtual_number_is_scrubbed_unless_the_subject_holds_it_too():
    theirs = session(a=OTHER, b=SUBJECT, caller_id_policy="per_participant", virtual_number_b=X_B,
                     external_ref=f"call {X_A} or {X_B}")
    # In another session, with someone else, the subject holds X_A themself.
    mine = session(a=SUBJECT, b="+6580000001", external_ref=f"call {X_A}")

    only_theirs = documents(holdings(theirs), NOW, {})["sessions.json"]
    both = documents(holdings(theirs, mine), NOW, {})["sessions.json"]

    assert only_theirs[0]["external_ref"] == f"call {REDACTED} or {X_B}"
    assert [s["external_ref"] for s in both] == [f"call {X_A} or {X_B}", f"call {X_A}"]
    assert [s["virtual_number"] for s in both] == [X_B, X_A]


def test_a_recording_without_requested_audio_says_so():
    s = session()
    recording = recording_row(call_row(s))
    (meta,) = documents(holdings(s, recordings=[recording]), NOW, {})["recordings.json"]
    assert (meta["audio"], meta["file"]) == ("not_requested", None)


def test_disclosures_say_whether_a_row_was_about_the_number_or_its_session_and_carry_no_hash():
    s = session()
    by_number, by_session = entry(1, subject_hash=HASH), entry(2, session_id=s.id, subject_hash=b"\x01" * 32)

    rows = documents(holdings(s, disclosures=[by_number, by_session]), NOW, {})["disclosures.json"]

    assert [r["about"] for r in rows] == ["your number", "your session"]
    assert all("subject_hash" not in r for r in rows) and (b"\x01" * 32).hex() not in json.dumps(rows)


def test_the_other_partys_number_is_scrubbed_from_free_text_in_every_spelling():
    s = session(external_ref=f"order for {OTHER} / 87654321 / 6587654321")
    reason = entry(1, subject_hash=HASH, reason="asked by 6587654321")

    text = json.dumps(documents(holdings(s, disclosures=[reason]), NOW, {}))

    for spelling in number_spellings(OTHER):
        assert spelling not in text
    # The reason, an internal note, is not given to the subject at all (bridge/privacy/rights.py).
    assert text.count(REDACTED) == 3 and SUBJECT in text and "asked by" not in text


def test_scrub_leaves_longer_digit_runs_and_ids_alone():
    assert scrub({"id": "x187654321", "n": "1876543210", "k": "87654321"}, [OTHER]) == \
        {"id": "x187654321", "n": "1876543210", "k": REDACTED}
    assert number_spellings(OTHER) == [OTHER, "6587654321", "87654321"]
    assert scrub(["a"], []) == ["a"]


def test_the_manifest_lists_every_file_with_its_size_and_sha256():
    docs = {"sessions.json": encode([{"a": 1}]), "calls.json": encode([])}
    request_id = uuid.uuid4()

    document = manifest(SUBJECT, NOW, {**docs, "audio/x.wav": (44, "ab" * 32)}, {"sessions": 1}, request_id)

    assert document["schema_version"] == SCHEMA_VERSION and document["subject"] == SUBJECT
    assert document["generated_at"] == "2026-06-01T12:00:00+00:00" and document["request_id"] == str(request_id)
    assert document["files"] == [
        {"name": "audio/x.wav", "bytes": 44, "sha256": "ab" * 32},
        {"name": "calls.json", "bytes": len(docs["calls.json"]), "sha256": hashlib.sha256(docs["calls.json"]).hexdigest()},
        {"name": "sessions.json", "bytes": len(docs["sessions.json"]),
         "sha256": hashlib.sha256(docs["sessions.json"]).hexdigest()}]
    assert document["counts"] == {"sessions": 1} and document["disclosure_window_days"] == 365


def test_a_request_is_due_thirty_days_after_it_was_received_and_overdue_only_while_open_past_that():
    received = received_at("2026-05-01", NOW)
    request = SubjectRequest(uuid.uuid4(), "access", "+65****4567", received, due_at(received, 30), "open", "cli:x")

    assert received == datetime(2026, 5, 1, tzinfo=timezone.utc)
    assert request.due_at == datetime(2026, 5, 31, tzinfo=timezone.utc)
    assert request.overdue(NOW) and not request.overdue(request.due_at)
    done = SubjectRequest(**{**request.__dict__, "status": "done", "completed_at": NOW})
    assert not done.overdue(NOW)
    assert request.to_json(NOW)["overdue"] is True and request.to_json(NOW)["subject"] == "+65****4567"


@pytest.mark.parametrize("raw", ["2026-13-01", "yesterday", "2026-05-01T10:00:00", "2027-01-01", "", "2000-01-01"])
def test_a_received_date_must_be_a_date_or_a_time_with_an_offset_not_in_the_future_nor_a_decade_ago(raw):
    with pytest.raises(ValueError):
        received_at(raw, NOW)


def test_received_defaults_to_now_and_takes_a_time_with_an_offset():
    assert received_at(None, NOW) == NOW
    assert received_at("2026-05-01T10:00:00+08:00", NOW) == datetime(2026, 5, 1, 2, tzinfo=timezone.utc)


def test_notes_keep_no_number_and_no_control_characters():
    assert clean_notes("called from +65 9123 4567\x00 about order 12") == "called from +65****4567  about order 12"
    assert clean_notes("   ") is None and clean_notes(None) is None


def test_the_other_partys_export_shows_only_which_of_the_subjects_sessions_it_disclosed():
    mine, theirs_alone = session(), uuid.uuid4()
    export = entry(1, action="subject.exported", target_type="subject", target_id="+65****4321",
                   subject_hash=b"\x02" * 32,
                   details={"counts": {"sessions": 7}, "include_audio": True,
                            "session_ids": [str(mine.id), str(theirs_alone)]})

    (row,) = documents(holdings(mine, disclosures=[export]), NOW, {})["disclosures.json"]

    assert (row["about"], row["target_id"]) == ("your session", "the other party")
    assert row["details"] == {"include_audio": True, "session_ids": [str(mine.id)]}
