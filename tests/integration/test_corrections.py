"""Corrections carried out (PDPA s22) on the real stack: a person's number is
corrected in their sessions (their next real call from the correct number goes
through, the old number no longer reaches anyone), the correction request is
answered by it, and every webhook destination that received data of those
sessions is sent `subject.corrected`; nobody else is, and no number travels."""
from __future__ import annotations

import asyncio
import json

from bridge.sessions.models import SessionRequest
from bridge.store import Store
from tests.integration.conftest import new_parties, query, wait_for_call_row
from tests.integration.test_api_call import Receiver
from tests.integration.test_cli import masking
from tests.integration.test_rights_export import open_request


def session_with_webhook(stack, url: str):
    parties = new_parties(stack, add_session=False)

    async def create():
        store = await Store.connect(stack.dsn, stack.keys)
        try:
            session, _ = await store.sessions.create(SessionRequest(
                parties.a, parties.b, ttl_seconds=600, record=False, purpose="delivery_order", webhook_url=url,
                virtual_number=parties.virtual_number))
            return session
        finally:
            await store.close()

    return parties, asyncio.run(create())


def test_a_corrected_number_is_used_from_the_next_call_and_past_recipients_are_told(stack, place_call, tmp_path):
    recipient, bystander = Receiver(), Receiver()
    parties, session = session_with_webhook(stack, recipient.url)
    _, unrelated = session_with_webhook(stack, bystander.url)  # someone else's session, its own receiver
    call = place_call(parties.a, parties.virtual_number, uas="uas_answer.xml", talk_ms=1000)
    assert call.counterpart.succeeded, call.counterpart.output
    recipient.wait_for("call.completed")  # the recipient now holds data of this session
    corrected = "+6596" + parties.a[-6:]
    request_id = open_request(stack, parties.a, "correction")

    unverified = masking(stack, "subject", "correct", parties.a, "--to", corrected, "--request", request_id)
    assert unverified.returncode == 1 and "identity" in unverified.stderr
    masking(stack, "subject", "request", "verify", request_id, "--method", "callback", "--by", "agent 2")
    result = masking(stack, "subject", "correct", parties.a, "--to", corrected, "--request", request_id, "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["sessions_corrected"] == [str(session.id)] and report["recipients_notified"] == 1
    assert report["fields"] == ["number"] and report["corrected_to"] == f"+65****{corrected[-4:]}"
    event = recipient.wait_for("subject.corrected")
    assert event["data"]["sessions"] == [{"session_id": str(session.id), "role": "a"}]
    assert event["data"]["fields"] == ["number"]
    for number in (parties.a, corrected, parties.b):
        assert all(number.lstrip("+").encode() not in body for _, body in recipient.requests), number
        assert number not in result.stdout + result.stderr
    assert [e["type"] for e in bystander.events()] == [], "a recipient of nothing of this person is told nothing"
    assert query(stack.dsn, "SELECT status FROM subject_requests WHERE id = $1::uuid", request_id) == [
        {"status": "done"}]
    (audit,) = query(stack.dsn, "SELECT actor, subject_hash, details FROM audit_log"
                                " WHERE action = 'subject.corrected' AND target_id = $1", f"+65****{parties.a[-4:]}")
    assert audit["subject_hash"] == stack.keys.lookup_hash(parties.a) and parties.a not in audit["details"]
    assert unrelated.participant_a not in str(audit)

    # The correction is carried out: the correct number now reaches the counterpart...
    again = place_call(corrected, parties.virtual_number, uas="uas_answer.xml", talk_ms=1000)
    assert again.counterpart.succeeded, again.counterpart.output
    row = wait_for_call_row(stack, parties.virtual_number)
    assert (row["disposition"], row["direction"], row["count"]) == ("answered", "a_to_b", 2)
    # ...and the old one reaches nobody.
    old = place_call(parties.a, parties.virtual_number, uac="uac_rejected.xml",
                     uac_values={"final_status": 403, "tag": "old"})
    assert old.caller.succeeded, old.caller.output
    row = wait_for_call_row(stack, parties.virtual_number)
    assert (row["disposition"], row["reject_reason"], row["callee_channel_id"]) == (
        "rejected", "not_a_participant", None)
    # The person's export under the correct number holds the session.
    export = masking(stack, "subject", "export", corrected, "--out", str(tmp_path / "x.zip"))
    assert export.returncode == 0 and "1 sessions" in export.stdout


def test_a_correction_is_refused_for_another_numbers_request_or_a_number_already_in_the_session(stack):
    parties = new_parties(stack, record=False)
    theirs = open_request(stack, parties.b, "correction")
    masking(stack, "subject", "request", "verify", theirs, "--method", "photo_id", "--by", "desk 1")

    foreign = masking(stack, "subject", "correct", parties.a, "--to", "+6591998877", "--request", theirs)
    same = masking(stack, "subject", "correct", parties.a, "--to", parties.a)

    assert foreign.returncode == 2 and "another number" in foreign.stderr
    assert same.returncode == 2
    assert query(stack.dsn, "SELECT status FROM subject_requests WHERE id = $1::uuid", theirs) == [
        {"status": "open"}]
    assert query(stack.dsn, "SELECT count(*) AS n FROM audit_log WHERE action = 'subject.corrected'"
                            " AND target_id = $1", f"+65****{parties.a[-4:]}") == [{"n": 0}]


def test_the_api_corrects_only_for_a_subjects_key_and_a_verified_request(stack):
    import requests

    from tests.integration.test_subject_access import _api_key

    parties = new_parties(stack, record=False)
    base = f"http://127.0.0.1:{stack.settings.http_port}"
    officer = {"Authorization": f"Bearer {asyncio.run(_api_key(stack, 'subjects'))}"}
    outsider = {"Authorization": f"Bearer {asyncio.run(_api_key(stack, 'sessions', 'recordings'))}"}
    corrected = "+6595" + parties.a[-6:]
    opened = requests.post(f"{base}/v1/subjects/requests", json={"kind": "correction", "number": parties.a},
                           headers=officer, timeout=10).json()
    body = {"number": parties.a, "corrected_number": corrected, "request_id": opened["id"]}

    foreign = requests.post(f"{base}/v1/subjects/correct", json=body, headers=outsider, timeout=10)
    unverified = requests.post(f"{base}/v1/subjects/correct", json=body, headers=officer, timeout=10)
    requests.post(f"{base}/v1/subjects/requests/{opened['id']}/verify", json={"method": "account"},
                  headers=officer, timeout=10)
    done = requests.post(f"{base}/v1/subjects/correct", json=body, headers=officer, timeout=10)

    assert foreign.status_code == 403
    assert (unverified.status_code, unverified.json()["error"]["code"]) == (409, "identity_not_verified")
    assert done.status_code == 200, done.text
    assert len(done.json()["sessions_corrected"]) == 1 and done.json()["request_id"] == opened["id"]
    for answer in (foreign, unverified, done):
        assert parties.a not in answer.text and corrected not in answer.text
    rows = query(stack.dsn, "SELECT count(*) AS n FROM session_participants WHERE number_hash = $1",
                 stack.keys.lookup_hash(corrected))
    assert rows == [{"n": 1}]
