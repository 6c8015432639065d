"""Rights of access and correction as pure data (bridge/privacy/rights.py):
which channel is the subject's, what the disclosure log keeps from them, and
what erasure keeps under the preservation hold."""
from __future__ import annotations

import json
import uuid

from bridge.privacy.retention import KeptBecause, SessionToErase, plan_erasure
from bridge.privacy.rights import own_channel, recipient_of, split_disclosures, withheld_disclosure
from bridge.privacy.subject_access import documents
from tests.unit.test_subject_access import HASH, NOW, call_row, entry, holdings, recording_row, session


def test_the_subjects_channel_is_the_callers_left_or_the_counterparts_right_and_mixed_audio_has_none():
    assert own_channel(2, "a", "a") == 0 and own_channel(2, "b", "a") == 1
    assert own_channel(2, "a", "b") == 1 and own_channel(2, "b", "b") == 0
    assert own_channel(1, "a", "a") is None, "one channel holds both voices"
    assert own_channel(2, None, "a") is None, "a call nobody placed (or purged details) is not guessed"


def test_legal_holds_and_law_enforcement_rows_are_kept_from_the_subject_and_the_rest_named_by_recipient():
    rows = [entry(1, subject_hash=HASH, reason="ticket 77"),
            entry(2, subject_hash=HASH, action="legal_hold.set", reason="dispute"),
            entry(3, subject_hash=HASH, reason="Police request 4"),
            entry(4, subject_hash=HASH, reason="per s21(4)"),
            entry(5, subject_hash=HASH, details={"law_enforcement": True}),
            entry(6, subject_hash=HASH, action="session.read", details={"via": "legal_hold"})]

    shown, withheld = split_disclosures(rows, HASH, set())

    assert [r["seq"] for r in shown] == [1] and [w["seq"] for w in withheld] == [2, 3, 4, 5, 6]
    assert shown[0]["recipient"] == "API client crm"
    assert {"actor", "source", "reason"}.isdisjoint(shown[0]) and "ticket 77" not in json.dumps(shown)
    assert withheld_disclosure(rows[0]) is None


def test_recipients_never_name_a_person_or_an_address():
    assert recipient_of("apikey:ab12:crm") == "API client crm"
    assert recipient_of("cli:alice") == recipient_of("console:alice") == "the operator's staff"
    assert recipient_of("service") == "the operator's service"


def test_what_an_export_withheld_is_never_shown_back_in_the_next_one():
    s = session()
    earlier = entry(1, subject_hash=HASH, action="subject.exported",
                    details={"include_audio": True, "withheld": [{"seq": 9, "reason": "law enforcement"}]})

    (row,) = documents(holdings(s, disclosures=[earlier]), NOW, {})["disclosures.json"]

    assert row["details"] == {"include_audio": True}


def test_a_recording_withheld_says_so_in_its_metadata():
    s = session()
    recording = recording_row(call_row(s))
    (meta,) = documents(holdings(s, recordings=[recording]), NOW, {recording["id"]: ("withheld", None)})[
        "recordings.json"]
    assert (meta["audio"], meta["file"]) == ("withheld", None)


def test_erasure_keeps_a_preserved_session_and_says_why():
    kept, erased = uuid.uuid4(), uuid.uuid4()
    plan = plan_erasure([SessionToErase(kept, live=True, held=False, call_in_progress=False, preserved=True),
                         SessionToErase(erased, live=False, held=False, call_in_progress=False)])
    assert plan.erase == [erased] and plan.close_first == []
    assert plan.kept == [(kept, KeptBecause.PRESERVATION_HOLD, None)]


def test_the_own_channel_is_streamed_as_the_mono_wav_of_that_channel_whatever_the_chunking():
    from bridge.recordings.convert import Pcm, write_wav
    from bridge.recordings.stereo import merge, split
    from bridge.subjects.audio import OwnChannel

    stereo, _ = merge(write_wav(Pcm(8000, [i % 300 for i in range(16001)])),
                      write_wav(Pcm(8000, [-(i % 200) for i in range(12000)])), (0, 5))

    class Stored:
        def pieces(self):
            for i in range(0, len(stereo), 333):  # odd chunks: a sample split between two
                yield stereo[i:i + 333]

    for channel in (0, 1):
        assert b"".join(OwnChannel(Stored(), channel).pieces()) == write_wav(split(stereo)[channel])
