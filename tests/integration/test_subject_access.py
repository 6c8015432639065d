"""Data subjects' access requests on real PostgreSQL, after real SIPp calls
through Asterisk: the export holds the person's sessions, calls, recordings
(and the audio, decrypted) and who accessed them, never the other party's
number; requests are tracked against their deadline from the CLI and the API."""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import uuid
import zipfile
from datetime import datetime, timedelta, timezone

import pytest
import requests

from bridge.store import Store
from tests.integration.conftest import new_parties, query, wait_for_call_row
from tests.integration.test_api import api, error_code  # noqa: F401 (fixture; `store` comes from conftest)
from tests.integration.test_audit import operator  # noqa: F401 (fixture)
from tests.integration.test_cli import masking
from tests.integration.test_privacy import number_spellings


def members(blob: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def spellings_in(files: dict[str, bytes], number: str) -> list[str]:
    """Every (file, spelling) where a spelling of `number` appears, as text or UTF-16."""
    return [f"{spelling} in {name}" for name, content in files.items() for spelling in number_spellings(number)
            if spelling.encode() in content or spelling.encode("utf-16-le") in content]


async def _api_key(stack, *scopes: str) -> str:
    store = await Store.connect(stack.dsn, stack.keys)
    try:
        token, _ = await store.api_keys.create(f"privacy-officer-{uuid.uuid4().hex[:4]}", list(scopes))
        return token
    finally:
        await store.close()


# -- after a real call ---------------------------------------------------------------------------
def test_an_export_after_a_real_call_holds_the_call_its_audio_and_who_read_it_but_never_the_other_number(
        stack, place_call, tmp_path):
    parties = new_parties(stack)
    call = place_call(parties.a, parties.virtual_number, uas="uas_answer.xml", talk_ms=2000)
    assert call.counterpart.succeeded, call.counterpart.output
    row = wait_for_call_row(stack, parties.virtual_number, with_recording=True)
    recording = row["recording"]
    base = f"http://127.0.0.1:{stack.settings.http_port}"
    token = asyncio.run(_api_key(stack, "recordings", "subjects"))
    auth = {"Authorization": f"Bearer {token}"}
    # Someone reads the recording, and an officer exports once from the CLI: both are disclosures.
    read = requests.get(f"{base}/v1/recordings/{recording['id']}", headers={**auth, "X-Audit-Reason": "ticket 77"},
                        timeout=10)
    assert read.status_code == 200
    first = masking(stack, "subject", "export", parties.a, "--out", str(tmp_path / "first.zip"))
    assert first.returncode == 0, first.stderr
    assert parties.a not in first.stdout + first.stderr and parties.b not in first.stdout + first.stderr

    answer = requests.post(f"{base}/v1/subjects/export", json={"number": parties.a, "include_audio": True,
                                                                     "include_mixed_audio": True},
                           headers=auth, timeout=30)

    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/zip"
    files = members(answer.content)
    manifest = json.loads(files["manifest.json"])
    assert manifest["schema_version"] == 1 and manifest["subject"] == parties.a
    audio_name = f"audio/{recording['id']}.wav"
    assert {f["name"] for f in manifest["files"]} == {"sessions.json", "calls.json", "recordings.json",
                                                      "disclosures.json", "disclosed_to.json", "withheld.json",
                                                      audio_name}
    for listed in manifest["files"]:
        assert hashlib.sha256(files[listed["name"]]).hexdigest() == listed["sha256"], listed["name"]
        assert len(files[listed["name"]]) == listed["bytes"]

    (session,) = json.loads(files["sessions.json"])
    assert session["id"] == str(row["session_id"]) and session["your_number"] == parties.a
    assert session["counterpart"]["role"] == "b" and session["virtual_number"] == parties.virtual_number
    (exported_call,) = json.loads(files["calls.json"])
    assert exported_call["id"] == str(row["id"]) and exported_call["you_were"] == "caller"
    assert exported_call["disposition"] == "answered" and exported_call["recording_id"] == str(recording["id"])
    (meta,) = json.loads(files["recordings.json"])
    assert (meta["id"], meta["sha256"], meta["audio"]) == (str(recording["id"]), recording["sha256"], "included")
    audio = files[audio_name]
    assert audio.startswith(b"RIFF") and hashlib.sha256(audio).hexdigest() == recording["sha256"]
    assert len(audio) == recording["bytes"]
    served = requests.get(f"{base}/v1/recordings/{recording['id']}/audio", headers=auth, timeout=10)
    assert served.content == audio, "the export's audio is the recording the API serves"

    disclosures = json.loads(files["disclosures.json"])
    read_rows = [d for d in disclosures if d["action"] == "recording.read"]
    assert [(d["target_id"], d["about"]) for d in read_rows] == [(str(recording["id"]), "your session")]
    assert read_rows[0]["recipient"].startswith("API client ")  # the recipient, not the actor or its reason
    exports = [d for d in disclosures if d["action"] == "subject.exported"]
    assert len(exports) == 1 and exports[0]["recipient"] == "the operator's staff", "the earlier export, not this one"

    assert spellings_in(files, parties.b) == []
    assert spellings_in({"stdout": first.stdout.encode()}, parties.b) == []
    assert spellings_in(members((tmp_path / "first.zip").read_bytes()), parties.b) == []
    # This export is in the trail, by hash and masked number, for the next one to list.
    audit = query(stack.dsn, "SELECT * FROM audit_log WHERE action = 'subject.exported' ORDER BY seq")
    assert [a["subject_hash"] for a in audit[-2:]] == [stack.keys.lookup_hash(parties.a)] * 2
    assert audit[-1]["actor"].startswith("apikey:") and json.loads(audit[-1]["details"])["include_audio"] is True
    assert parties.a not in str(audit) and parties.a.lstrip("+") not in str(audit)


def test_the_counterpart_gets_their_own_export_of_the_same_call_naming_them_the_callee(stack, place_call, tmp_path):
    parties = new_parties(stack)
    call = place_call(parties.a, parties.virtual_number, uas="uas_answer.xml", talk_ms=1000)
    assert call.counterpart.succeeded, call.counterpart.output
    row = wait_for_call_row(stack, parties.virtual_number, with_recording=True)

    result = masking(stack, "subject", "export", parties.b, "--out", str(tmp_path / "b.zip"))

    assert result.returncode == 0, result.stderr
    files = members((tmp_path / "b.zip").read_bytes())
    (exported_call,) = json.loads(files["calls.json"])
    assert exported_call["id"] == str(row["id"]) and exported_call["you_were"] == "callee"
    assert json.loads(files["recordings.json"])[0]["audio"] == "not_requested"
    assert not any(name.startswith("audio/") for name in files)
    assert spellings_in(files, parties.a) == []
    # B's export disclosed the session A shares: A's next export lists it, without B's number.
    mine = masking(stack, "subject", "export", parties.a, "--out", str(tmp_path / "a.zip"))
    assert mine.returncode == 0, mine.stderr
    files = members((tmp_path / "a.zip").read_bytes())
    (theirs,) = [d for d in json.loads(files["disclosures.json"]) if d["action"] == "subject.exported"]
    assert (theirs["about"], theirs["target_id"]) == ("your session", "the other party")
    assert theirs["details"]["session_ids"] == [str(row["session_id"])]
    assert spellings_in(files, parties.b) == []


def test_under_per_participant_caller_id_each_export_shows_only_the_virtual_number_its_subject_holds(
        stack, place_call, tmp_path):
    from tests.integration.test_caller_id import per_participant_session

    x_a, x_b, a, b = per_participant_session(stack)
    for caller, dialed in ((a, x_a), (b, x_b)):  # A->B rows hold X_A, B->A rows X_B
        call = place_call(caller, dialed, uas="uas_answer.xml", talk_ms=1000)
        assert call.counterpart.succeeded, call.counterpart.output
        wait_for_call_row(stack, dialed)

    exports = {}
    for who, number in (("a", a), ("b", b)):
        result = masking(stack, "subject", "export", number, "--out", str(tmp_path / f"{who}.zip"))
        assert result.returncode == 0, result.stderr
        exports[who] = members((tmp_path / f"{who}.zip").read_bytes())

    for who, mine, theirs, counterpart in (("a", x_a, x_b, b), ("b", x_b, x_a, a)):
        files = exports[who]
        (session,) = json.loads(files["sessions.json"])
        calls = json.loads(files["calls.json"])
        assert (session["your_role"], session["virtual_number"]) == (who, mine)
        assert sorted(c["you_were"] for c in calls) == ["callee", "caller"]
        assert [c["virtual_number"] for c in calls] == [mine, mine], "a call shows the number the subject dialed or saw"
        assert spellings_in(files, theirs) == [], f"{who}'s export shows the other's virtual number"
        assert spellings_in(files, counterpart) == []


def test_a_number_nothing_is_held_about_gets_an_empty_export(stack, tmp_path):
    result = masking(stack, "subject", "export", "+6590009999", "--out", str(tmp_path / "none.zip"))

    assert result.returncode == 0, result.stderr
    files = members((tmp_path / "none.zip").read_bytes())
    assert json.loads(files["sessions.json"]) == [] and json.loads(files["calls.json"]) == []
    assert json.loads(files["manifest.json"])["counts"]["sessions"] == 0


# -- request tracking from the CLI ----------------------------------------------------------------
async def test_overdue_requests_are_listed_and_an_export_answering_one_completes_it(store, operator, tmp_path):
    late_day = (datetime.now(timezone.utc) - timedelta(days=40)).date().isoformat()

    def run(*args: str):
        return masking(operator, "subject", *args)

    late = await asyncio.to_thread(run, "request", "open", "--kind", "access", "+6591114444", "--received",
                                   late_day, "--notes", "by e-mail from +6591114444", "--json")
    fresh = await asyncio.to_thread(run, "request", "open", "--kind", "erasure", "+6591115555", "--json")
    assert late.returncode == 0 and fresh.returncode == 0, late.stderr + fresh.stderr
    late, fresh = json.loads(late.stdout), json.loads(fresh.stdout)
    overdue = await asyncio.to_thread(run, "requests", "--overdue", "--json")
    table = await asyncio.to_thread(run, "requests")
    other = await asyncio.to_thread(run, "export", "+6591115555", "--request", late["id"], "--out",
                                    str(tmp_path / "other.zip"))
    wrong_kind = await asyncio.to_thread(run, "export", "+6591115555", "--request", fresh["id"], "--out",
                                         str(tmp_path / "kind.zip"))
    verified = await asyncio.to_thread(run, "request", "verify", late["id"], "--method", "photo_id", "--by", "desk")
    assert verified.returncode == 0, verified.stderr
    answered = await asyncio.to_thread(run, "export", "+6591114444", "--request", late["id"], "--out",
                                       str(tmp_path / "late.zip"))
    again = await asyncio.to_thread(run, "export", "+6591114444", "--request", late["id"], "--out",
                                    str(tmp_path / "again.zip"))
    overdue_after = await asyncio.to_thread(run, "requests", "--overdue", "--json")
    closed = await asyncio.to_thread(run, "request", "close", fresh["id"], "--refused", "--notes", "legal hold",
                                     "--json")
    closed_twice = await asyncio.to_thread(run, "request", "close", fresh["id"])

    assert late["due_at"].startswith((datetime.fromisoformat(late_day) + timedelta(days=30)).date().isoformat())
    assert late["subject"] == "+65****4444" and late["notes"] == "by e-mail from +65****4444"
    assert [r["id"] for r in json.loads(overdue.stdout)["requests"]] == [late["id"]]
    assert "+6591114444" not in table.stdout and "+65****4444" in table.stdout
    assert (other.returncode, wrong_kind.returncode) == (2, 2)
    assert "another number" in other.stderr and "erasure" in wrong_kind.stderr
    assert not (tmp_path / "other.zip").exists(), "no export is made for a mismatched request"
    assert answered.returncode == 0, answered.stderr
    assert f"request {late['id']} done" in answered.stdout
    assert json.loads(members((tmp_path / "late.zip").read_bytes())["manifest.json"])["request_id"] == late["id"]
    assert again.returncode == 1 and "already done" in again.stderr and not (tmp_path / "again.zip").exists()
    assert json.loads(overdue_after.stdout)["requests"] == []
    closed = json.loads(closed.stdout)
    assert (closed["status"], closed["notes"], closed["overdue"]) == ("refused", "legal hold", False)
    assert closed_twice.returncode == 1
    rows = await store.audit.list(target_id=late["id"])
    assert [(r.action, r.details.get("status"), r.details.get("overdue")) for r in rows] == [
        ("subject.request.closed", "done", True), ("subject.request.verified", None, None),
        ("subject.request.opened", None, None)]
    async with store.pool.acquire() as conn:
        assert "6591114444" not in str(await conn.fetch("SELECT * FROM subject_requests"))


async def test_the_cli_refuses_a_malformed_number_or_date_without_echoing_it(operator, tmp_path):
    bad_number = await asyncio.to_thread(masking, operator, "subject", "export", "+65123", "--out",
                                         str(tmp_path / "x.zip"))
    bad_date = await asyncio.to_thread(masking, operator, "subject", "request", "open", "--kind", "access",
                                       "+6591116666", "--received", "2026-02-30")
    future = await asyncio.to_thread(masking, operator, "subject", "request", "open", "--kind", "access",
                                     "+6591116666", "--received", "2999-01-01")

    assert bad_number.returncode == 2 and "+65123" not in bad_number.stderr and not (tmp_path / "x.zip").exists()
    assert bad_date.returncode == 2 and "--received" in bad_date.stderr
    assert future.returncode == 2 and "future" in future.stderr


# -- the API -------------------------------------------------------------------------------------
@pytest.fixture
async def officer(api, store):
    """`api` with a privacy officer's key (the `subjects` scope)."""
    token, _ = await store.api_keys.create("officer", ["subjects"])
    return {"Authorization": f"Bearer {token}"}


async def test_the_api_refuses_keys_without_the_subjects_scope(api, officer):
    export = await api.post("/v1/subjects/export", json={"number": "+6591117777"})
    listing = await api.get("/v1/subjects/requests")

    assert (export.status, error_code(await export.json())) == (403, "forbidden")
    assert "'subjects' scope" in (await export.json())["error"]["message"]
    assert listing.status == 403


@pytest.mark.parametrize("body, status, code, field", [
    ({"number": "+65123"}, 422, "invalid_number", "number"),
    ({"number": 6591117777}, 422, "invalid_field", "number"),
    ({}, 422, "invalid_field", "number"),
    ({"number": "+6591117777", "include_audio": "yes"}, 422, "invalid_field", "include_audio"),
    ({"number": "+6591117777", "request_id": "r-1"}, 422, "invalid_field", "request_id"),
    ({"number": "+6591117777", "phone": "+6591117777"}, 422, "invalid_field", "phone"),
    ({"number": "+6591117777", "request_id": str(uuid.UUID(int=1))}, 404, "not_found", None),
])
async def test_the_export_answers_precise_errors_and_never_echoes_the_number(api, officer, body, status, code, field):
    answer = await api.post("/v1/subjects/export", json=body, headers=officer)
    error = (await answer.json())["error"]

    assert (answer.status, error["code"], error.get("field")) == (status, code, field)
    assert "6591117777" not in json.dumps(error) and "65123" not in json.dumps(error)


async def test_requests_over_the_api_are_opened_listed_overdue_and_closed_once(api, officer, store):
    late = await api.post("/v1/subjects/requests", headers=officer,
                          json={"kind": "correction", "number": "+6591118888", "received_at": "2025-01-02"})
    fresh = await api.post("/v1/subjects/requests", headers=officer, json={"kind": "access", "number": "+6591118889"})
    late_body, fresh_body = await late.json(), await fresh.json()
    overdue = await (await api.get("/v1/subjects/requests", params={"overdue": "true"}, headers=officer)).json()
    done = await api.post(f"/v1/subjects/requests/{late_body['id']}/close", json={}, headers=officer)
    twice = await api.post(f"/v1/subjects/requests/{late_body['id']}/close", json={"status": "refused"},
                           headers=officer)
    mismatch = await api.post("/v1/subjects/export", headers=officer,
                              json={"number": "+6591118888", "request_id": fresh_body["id"]})
    shown = await api.get(f"/v1/subjects/requests/{fresh_body['id']}", headers=officer)
    bad = {name: await api.post("/v1/subjects/requests", headers=officer, json=body) for name, body in {
        "kind": {"kind": "deletion", "number": "+6591118888"},
        "received_at": {"kind": "access", "number": "+6591118888", "received_at": "last week"},
        "number": {"kind": "access", "number": "12"}}.items()}
    bad_query = await api.get("/v1/subjects/requests", params={"overdue": "yes"}, headers=officer)
    unknown = await api.get(f"/v1/subjects/requests/{uuid.uuid4()}", headers=officer)

    assert (late.status, fresh.status) == (201, 201)
    assert late.headers["Location"] == f"/v1/subjects/requests/{late_body['id']}"
    assert late_body["due_at"] == "2025-02-01T00:00:00+00:00" and late_body["overdue"] is True
    assert fresh_body["overdue"] is False and fresh_body["subject"] == "+65****8889"
    assert [r["id"] for r in overdue["requests"]] == [late_body["id"]]
    assert done.status == 200 and (await done.json())["status"] == "done"
    assert (twice.status, error_code(await twice.json())) == (409, "request_not_open")
    assert (mismatch.status, error_code(await mismatch.json())) == (422, "request_mismatch")
    assert shown.status == 200 and (await shown.json())["status"] == "open"
    for field, answer in bad.items():
        error = (await answer.json())["error"]
        assert answer.status == 422 and error["field"] == field, (field, error)
    assert bad_query.status == 422 and unknown.status == 404
    opened = await store.audit.list(action="subject.request.opened")
    assert {r.subject_hash for r in opened} == {store.keys.lookup_hash("+6591118888"),
                                                store.keys.lookup_hash("+6591118889")}
    assert all(r.actor.startswith("apikey:") for r in opened)


# -- a request closed while its export runs (fixed after review) ---------------------------------
async def test_an_export_whose_request_is_closed_meanwhile_is_refused_before_its_audit_row_or_delivered_after(
        store, monkeypatch):
    from bridge.subjects import export as subject_export
    from bridge.privacy.audit import Actor
    from bridge.privacy.subject_access import RequestNotOpen

    officer = Actor("cli:test", "cli@test")
    now = datetime.now(timezone.utc)
    number = "+6591119990"
    early = await store.subjects.open_request("access", number, now, now + timedelta(days=30), officer)
    late = await store.subjects.open_request("access", number, now, now + timedelta(days=30), officer)
    for request in (early, late):  # the identity check an export of a tracked request needs
        await store.subjects.verify_request(request.id, "photo_id", officer)
    read, write = subject_export.read_holdings, subject_export._write_zip
    loop = asyncio.get_running_loop()

    async def read_then_close(store_, subject, now_):  # closed after the request was checked, before the audit
        holdings = await read(store_, subject, now_)
        await store.subjects.complete_request(early.id, officer, "refused")
        return holdings

    monkeypatch.setattr(subject_export, "read_holdings", read_then_close)
    refused_out = io.BytesIO()
    with pytest.raises(RequestNotOpen):
        await subject_export.export_subject(store, number, refused_out, officer, now, request_id=early.id)
    monkeypatch.setattr(subject_export, "read_holdings", read)

    def close_then_write(*args):  # closed after the audit row, while the zip is written
        asyncio.run_coroutine_threadsafe(store.subjects.complete_request(late.id, officer, "refused"), loop).result()
        return write(*args)

    monkeypatch.setattr(subject_export, "_write_zip", close_then_write)
    out = io.BytesIO()
    summary = await subject_export.export_subject(store, number, out, officer, now, request_id=late.id)

    exported = await store.audit.list(action="subject.exported")
    assert [e.details["request_id"] for e in exported] == [str(late.id)], "no row for the refused export"
    assert refused_out.getvalue() == b""
    assert "manifest.json" in members(out.getvalue()) and summary.request_done is False
    assert (await store.subjects.request(late.id))[0].status == "refused"  # as its closer left it
