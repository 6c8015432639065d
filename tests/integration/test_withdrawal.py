"""Withdrawal of consent and the purpose registry on real calls: SIPp through
Asterisk into the service (and the FastAGI fallback), PostgreSQL underneath.

A person who withdraws consent is not recorded on their next call, on either
call path; their past recordings are not used unless a legal hold keeps them
(then each read is audited); a notice that does not play records nothing; on
the fallback the counterpart can opt out as on the ARI path. Sessions must
name a registered purpose, and marketing needs its Do Not Call check.

These run on a stack of their own with the real notice (long enough to press
a digit during it), as tests/integration/test_consent.py does.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import new_parties, query, wait_for_call_row
from tests.integration.test_cli import masking
from tests.integration.test_faults import wait_until
from tests.integration.test_subject_access import _api_key
from tests.support.stack import REPO, running_stack


PRESS_9 = '<action><exec play_pcap_audio="pcap/dtmf_2833_9.pcap"/></action>'
MISSING_NOTICE = "masking/no-such-notice"


@pytest.fixture(scope="module")
def consent_stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("consent-stack"), MASKING_NOTICE_SOUND="") as stack:
        yield stack


@pytest.fixture(scope="module")
def officer(consent_stack):
    """An API key of a privacy officer (subjects) who also reads recordings."""
    token = asyncio.run(_api_key(consent_stack, "recordings", "subjects", "sessions"))
    return {"Authorization": f"Bearer {token}", "X-Audit-Reason": "ticket 14"}


def api(stack, method: str, path: str, headers: dict, body: dict | None = None) -> requests.Response:
    return requests.request(method, f"http://127.0.0.1:{stack.settings.http_port}{path}", headers=headers,
                            json=body, timeout=15)


def notices_of(row) -> list[dict]:
    return json.loads(row["notices"]) if isinstance(row["notices"], str) else row["notices"]


def recorded_call(place_call, stack, parties):
    """A call the counterpart answers, with both parties hearing the notice out."""
    result = place_call(parties.a, parties.virtual_number, via=stack, uas="uas_notice.xml",
                        uas_values={"after_answer": ""}, talk_ms=2500, timeout=60)
    assert result.caller.succeeded, result.caller.output
    return result


@contextmanager
def fallback_only(stack, log_path: Path, **env: str):
    """The service stopped and `masking serve-agi` alone answering (as in
    test_faults.py); the service is back when the block ends."""
    stack.stop_service()
    with open(log_path, "wb") as log:
        agi = subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve-agi"], cwd=REPO, stdout=log,
                               stderr=subprocess.STDOUT, env={**os.environ, **stack.env, **env})
    try:
        wait_until(lambda: '"agi.listening"' in log_path.read_text())
        yield agi
    finally:
        agi.terminate()
        agi.wait(timeout=20)
        stack.start_service()


# -- withdrawal ------------------------------------------------------------------------------------
def test_a_withdrawn_numbers_next_call_is_not_recorded_on_the_ari_path(consent_stack, place_call):
    parties = new_parties(consent_stack)
    recorded_call(place_call, consent_stack, parties)
    before = wait_for_call_row(consent_stack, parties.virtual_number, with_recording=True)
    assert before["recorded"] and before["recording"] is not None and before["notice_sha256"]

    withdrawn = masking(consent_stack, "subject", "withdraw", parties.a, "--json")
    assert withdrawn.returncode == 0, withdrawn.stderr
    answer = json.loads(withdrawn.stdout)
    assert (answer["kind"], answer["status"], answer["do_not_record"]) == ("withdrawal", "done", True)
    assert any("No call" in c for c in answer["consequences"])
    assert parties.a not in withdrawn.stdout, "the number is echoed only masked"

    after = place_call(parties.a, parties.virtual_number, via=consent_stack, uas="uas_answer.xml", talk_ms=2000)
    assert after.caller.succeeded and after.counterpart.succeeded, "the call itself still connects"
    row = wait_for_call_row(consent_stack, parties.virtual_number)
    assert row["id"] != before["id"] and row["disposition"] == "answered"
    assert not row["recorded"] and row["recording"] is None and notices_of(row) == []
    assert not any(m.startswith("SIP/2.0 183") for m in after.caller.received()), "a notice for no recording"


def test_past_recordings_of_a_withdrawn_number_are_refused_and_readable_only_under_legal_hold_audited(
        consent_stack, place_call, officer):
    parties = new_parties(consent_stack)
    recorded_call(place_call, consent_stack, parties)
    row = wait_for_call_row(consent_stack, parties.virtual_number, with_recording=True)
    audio = f"/v1/recordings/{row['recording']['id']}/audio"
    assert api(consent_stack, "GET", audio, officer).status_code == 200

    # The counterpart withdraws (over the API): the recording is theirs too.
    withdrawn = api(consent_stack, "POST", "/v1/subjects/withdraw", officer, {"number": parties.b})
    assert withdrawn.status_code == 201, withdrawn.text
    assert withdrawn.json()["do_not_record"] and parties.b not in withdrawn.text

    refused = api(consent_stack, "GET", audio, officer)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "recording_withdrawn")

    held = api(consent_stack, "POST", f"/v1/sessions/{row['session_id']}/legal-hold", officer,
               {"reason": "case 2026-14"})
    assert held.status_code == 200, held.text
    read = api(consent_stack, "GET", audio, officer)
    assert read.status_code == 200 and len(read.content) > 8000
    audits = query(consent_stack.dsn, "SELECT details FROM audit_log WHERE action = 'recording.audio'"
                   " AND target_id = $1 ORDER BY seq", str(row["recording"]["id"]))
    details = [json.loads(a["details"]) if isinstance(a["details"], str) else a["details"] for a in audits]
    assert [d.get("legal_hold_reason") for d in details] == [None, "case 2026-14"]


def test_an_outsider_without_the_subjects_scope_cannot_withdraw_anyones_consent(consent_stack):
    parties = new_parties(consent_stack)
    token = asyncio.run(_api_key(consent_stack, "sessions"))
    outsider = {"Authorization": f"Bearer {token}"}
    listed = query(consent_stack.dsn, "SELECT count(*) AS n FROM do_not_record")[0]["n"]
    answer = api(consent_stack, "POST", "/v1/subjects/withdraw", outsider, {"number": parties.a})
    opened = api(consent_stack, "POST", "/v1/subjects/requests", outsider, {"kind": "withdrawal", "number": parties.a})
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "forbidden"
    assert opened.status_code == 403
    assert query(consent_stack.dsn, "SELECT count(*) AS n FROM do_not_record")[0]["n"] == listed


def test_a_withdrawn_counterparts_next_call_is_not_recorded_on_the_fastagi_path(
        consent_stack, place_call, officer, tmp_path):
    parties = new_parties(consent_stack)
    assert api(consent_stack, "POST", "/v1/subjects/requests", officer,
               {"kind": "withdrawal", "number": parties.b}).status_code == 201
    with fallback_only(consent_stack, tmp_path / "agi.log"):
        call = place_call(parties.a, parties.virtual_number, via=consent_stack, uas="uas_answer.xml", talk_ms=2000)
        assert call.caller.succeeded and call.counterpart.succeeded, call.counterpart.output
        row = wait_for_call_row(consent_stack, parties.virtual_number)
    assert row["path"] == "agi" and row["disposition"] == "answered"
    assert not row["recorded"] and row["recording"] is None and notices_of(row) == []


# -- the notice on the fallback ---------------------------------------------------------------------
def test_on_the_fastagi_path_both_parties_hear_the_notice_and_the_counterpart_can_opt_out(
        consent_stack, place_call, tmp_path):
    heard_out, opted = new_parties(consent_stack), new_parties(consent_stack)
    with fallback_only(consent_stack, tmp_path / "agi.log"):
        recorded_call(place_call, consent_stack, heard_out)
        first = wait_for_call_row(consent_stack, heard_out.virtual_number, with_recording=True)
        pressed = place_call(opted.a, opted.virtual_number, via=consent_stack, uas="uas_notice.xml",
                             uas_values={"after_answer": f"<nop>{PRESS_9}</nop>"}, talk_ms=2500, timeout=60)
        assert pressed.caller.succeeded, pressed.caller.output
        second = wait_for_call_row(consent_stack, opted.virtual_number)
    assert first["path"] == "agi" and first["recorded"] and first["recording"]["bytes"] > 8000
    assert [(n["party"], n["completed"], n["opted_out"]) for n in notices_of(first)] == \
        [("caller", True, False), ("callee", True, False)]
    assert first["notice_sha256"] is not None
    assert second["path"] == "agi" and second["disposition"] == "answered"
    assert second["recording_opt_out"] == "callee" and not second["recorded"] and second["recording"] is None


def test_a_notice_that_does_not_play_records_nothing_on_either_path(consent_stack, place_call, tmp_path):
    ari_call, agi_call = new_parties(consent_stack), new_parties(consent_stack)
    consent_stack.stop_service()
    consent_stack.start_service(MASKING_NOTICE_SOUND=MISSING_NOTICE)
    try:
        call = place_call(ari_call.a, ari_call.virtual_number, via=consent_stack, uas="uas_answer.xml", talk_ms=2000)
        assert call.caller.succeeded and call.counterpart.succeeded, call.caller.output
        ari_row = wait_for_call_row(consent_stack, ari_call.virtual_number)
        with fallback_only(consent_stack, tmp_path / "agi.log", MASKING_NOTICE_SOUND=MISSING_NOTICE):
            call = place_call(agi_call.a, agi_call.virtual_number, via=consent_stack, uas="uas_answer.xml",
                              talk_ms=2000)
            assert call.caller.succeeded and call.counterpart.succeeded, call.caller.output
            agi_row = wait_for_call_row(consent_stack, agi_call.virtual_number)
    finally:
        consent_stack.stop_service()
        consent_stack.start_service()
    for row, path in ((ari_row, "ari"), (agi_row, "agi")):
        assert row["path"] == path and row["disposition"] == "answered"
        assert not row["recorded"] and row["recording"] is None, f"recorded on the {path} path"
        assert [n["completed"] for n in notices_of(row)][:1] == [False]
        assert row["notice_sha256"] is None


# -- the purpose registry ----------------------------------------------------------------------------
def test_sessions_must_name_a_registered_purpose_and_marketing_needs_do_not_call_evidence(consent_stack, officer):
    parties = new_parties(consent_stack, add_session=False)
    base = {"participant_a": parties.a, "participant_b": parties.b, "virtual_number": parties.virtual_number}

    unregistered = api(consent_stack, "POST", "/v1/sessions", officer, {**base, "purpose": "pizza_delivery"})
    marketing = api(consent_stack, "POST", "/v1/sessions", officer, {**base, "purpose": "promotion"})
    recorded = api(consent_stack, "POST", "/v1/sessions", officer,
                   {**base, "purpose": "support_unrecorded", "record": True})
    cli = masking(consent_stack, "sessions", "create", "--purpose", "pizza_delivery", "--a", parties.a,
                  "--b", parties.b)
    with_evidence = api(consent_stack, "POST", "/v1/sessions", officer,
                        {**base, "purpose": "promotion", "dnc_checked_at": "2026-05-01T09:00:00+08:00",
                         "dnc_reference": "DNC-2026-0001"})

    assert (unregistered.status_code, unregistered.json()["error"]["code"]) == (422, "unregistered_purpose")
    assert unregistered.json()["error"]["field"] == "purpose"
    assert (marketing.status_code, marketing.json()["error"]["code"]) == (422, "dnc_evidence_required")
    assert (recorded.status_code, recorded.json()["error"]["code"]) == (422, "purpose_does_not_record")
    assert cli.returncode == 2 and "unregistered_purpose" in cli.stderr
    assert with_evidence.status_code == 201, with_evidence.text
    assert with_evidence.json()["record"] is False, "a purpose that does not record never records"
    stored = query(consent_stack.dsn, "SELECT dnc_reference FROM masking_sessions WHERE id = $1",
                   with_evidence.json()["id"])
    assert stored[0]["dnc_reference"] == "DNC-2026-0001"


def test_masking_purposes_lists_the_registry(consent_stack):
    listed = masking(consent_stack, "purposes", "--json")
    assert listed.returncode == 0, listed.stderr
    codes = {p["code"]: p for p in json.loads(listed.stdout)["purposes"]}
    assert {"delivery_order", "out_of_session", "promotion"} <= set(codes)
    assert codes["promotion"]["marketing"] and not codes["promotion"]["records"]


def test_a_session_made_after_a_withdrawal_is_stored_unrecorded(consent_stack, officer):
    parties = new_parties(consent_stack, add_session=False)
    opened = masking(consent_stack, "subject", "request", "open", parties.a, "--kind", "withdrawal", "--json")
    assert opened.returncode == 0, opened.stderr
    created = api(consent_stack, "POST", "/v1/sessions", officer,
                  {"participant_a": parties.b, "participant_b": parties.a, "purpose": "delivery_order",
                   "virtual_number": parties.virtual_number, "record": True})
    assert created.status_code == 201, created.text
    assert created.json()["record"] is False
    stored = query(consent_stack.dsn, "SELECT record FROM masking_sessions WHERE id = $1", created.json()["id"])
    assert stored[0]["record"] is False


def test_an_empty_opt_out_digit_is_refused_at_start_when_a_recording_purpose_needs_one(consent_stack, tmp_path):
    refused = subprocess.run([sys.executable, "-m", "bridge.cli", "serve-agi"], cwd=REPO, capture_output=True,
                             text=True, timeout=60,
                             env={**os.environ, **consent_stack.env, "MASKING_NOTICE_OPT_OUT_DIGIT": "none"})
    assert refused.returncode == 2
    assert "MASKING_NOTICE_OPT_OUT_DIGIT" in refused.stderr and "delivery_order" in refused.stderr

    lenient = tmp_path / "purposes.toml"
    lenient.write_text('[purposes.quiet]\nrecords = true\nempty_opt_out_allowed = true\n'
                       'notice = { text = "Recorded, no opt-out.", sha256 = "' + "b" * 64 + '" }\n')
    listed = masking(consent_stack, "purposes", "--json", MASKING_NOTICE_OPT_OUT_DIGIT="none",
                     MASKING_PURPOSE_REGISTRY=str(lenient))
    assert listed.returncode == 0, listed.stderr
