"""A rights-safe export (PDPA s21) after real SIPp calls through Asterisk:
of a two-channel recording the person gets their own voice only (each party
sends its own tone, and the exported channel is checked by its pitch); a
recording mixing both voices is withheld unless asked for, and then stated;
withheld.json says what is left out and why; legal-hold and law-enforcement
rows are not revealed (the export's audit row records them); the identity
check is required before a tracked request is answered; the archive is
encrypted by gpg and never written in clear."""
from __future__ import annotations

import asyncio
import io
import json
import stat
import subprocess
import wave
import zipfile

import pytest
import requests

from tests.integration.conftest import new_parties, query, wait_for_call_row
from tests.integration.test_cli import masking
from tests.integration.test_subject_access import _api_key, spellings_in
from tests.integration.test_two_channel import two_channel_session
from tests.support.tones import tone_pcap, tone_power

CALLER_HZ, COUNTERPART_HZ = 440, 1300
SAYS_COUNTERPART_TONE = '<nop><action><exec play_pcap_audio="pcap/counterpart_tone.pcap"/></action></nop>'


def members(blob: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def tone_call(stack, place_call, tmp_path):
    """A recorded two-channel call where the caller says 440 Hz and the counterpart 1300 Hz."""
    parties = two_channel_session(stack)
    (tmp_path / "pcap").mkdir(exist_ok=True)
    tone_pcap(CALLER_HZ, tmp_path / "pcap" / "g711a.pcap")  # what uac_call.xml plays
    tone_pcap(COUNTERPART_HZ, tmp_path / "pcap" / "counterpart_tone.pcap")
    call = place_call(parties.a, parties.virtual_number, uas="uas_notice.xml",
                      uas_values={"after_answer": SAYS_COUNTERPART_TONE}, uas_args=(), talk_ms=4000)
    assert call.caller.succeeded, call.caller.output
    row = wait_for_call_row(stack, parties.virtual_number, with_recording=True)
    assert row["recording_channels"] == 2
    return parties, row


def pitch_of(wav_bytes: bytes) -> tuple[int, float, float]:
    """(channels, power at the caller's tone, power at the counterpart's tone)."""
    with wave.open(io.BytesIO(wav_bytes)) as w:
        channels, frames = w.getnchannels(), w.readframes(w.getnframes())
    samples = list(memoryview(frames).cast("h"))
    return channels, tone_power(samples, CALLER_HZ), tone_power(samples, COUNTERPART_HZ)


def open_request(stack, number: str, kind: str = "access") -> str:
    opened = masking(stack, "subject", "request", "open", number, "--kind", kind, "--json")
    assert opened.returncode == 0, opened.stderr
    return json.loads(opened.stdout)["id"]


@pytest.fixture
def gnupg(tmp_path):
    """A gpg home of this test's own (no cached passphrase, no operator keyring); its agent stopped after."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    yield home
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, timeout=30)


def decrypt(path, passphrase_file, home) -> subprocess.CompletedProcess:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--quiet", "--pinentry-mode", "loopback",
                           "--no-symkey-cache", "--passphrase-file", str(passphrase_file), "--decrypt", str(path)],
                          capture_output=True, timeout=60)


def test_an_export_of_a_two_channel_call_holds_only_the_subjects_own_voice_encrypted_after_the_identity_check(
        stack, place_call, tmp_path, gnupg):
    parties, row = tone_call(stack, place_call, tmp_path)
    recording_id = row["recording"]["id"]
    request_id = open_request(stack, parties.a)
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    out = tmp_path / "exports" / "a.zip.gpg"
    out.parent.mkdir()
    export = ("subject", "export", parties.a, "--audio", "--request", request_id, "--passphrase-file",
              str(passphrase), "--out", str(out))

    unverified = masking(stack, *export, GNUPGHOME=str(gnupg))
    assert unverified.returncode != 0 and "identity" in unverified.stderr
    assert list(out.parent.iterdir()) == [], "nothing is written before the identity check"
    verified = masking(stack, "subject", "request", "verify", request_id, "--method", "photo_id", "--by", "desk 3",
                       "--json")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["identity_verified"]["method"] == "photo_id"
    answered = masking(stack, *export, GNUPGHOME=str(gnupg))

    assert answered.returncode == 0, answered.stderr
    assert "encrypted" in answered.stdout
    assert [p.name for p in out.parent.iterdir()] == ["a.zip.gpg"], "no clear zip, no partial file left"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert not zipfile.is_zipfile(out) and b"PK\x03\x04" not in out.read_bytes()
    clear = decrypt(out, passphrase, gnupg)
    assert clear.returncode == 0, clear.stderr
    files = members(clear.stdout)
    name = f"audio/{recording_id}.own-channel.wav"
    assert [n for n in files if n.startswith("audio/")] == [name]
    channels, mine, theirs = pitch_of(files[name])
    assert channels == 1 and mine > 20 * theirs, (mine, theirs)
    (meta,) = json.loads(files["recordings.json"])
    assert (meta["audio"], meta["file"]) == ("own_channel", name)
    withheld = json.loads(files["withheld.json"])
    assert [(w["item"], w["id"]) for w in withheld["withheld"]] == [("recording", str(recording_id))]
    assert "other party's channel" in withheld["withheld"][0]["reason"]
    assert spellings_in(files, parties.b) == []
    request = query(stack.dsn, "SELECT status, verify_method, verified_by FROM subject_requests WHERE id = $1::uuid",
                    request_id)
    assert request == [{"status": "done", "verify_method": "photo_id", "verified_by": "desk 3"}]

    # The counterpart's own export of the same call holds the other channel: their voice only.
    theirs_out = tmp_path / "b.zip"
    other = masking(stack, "subject", "export", parties.b, "--audio", "--out", str(theirs_out))
    assert other.returncode == 0, other.stderr
    b_files = members(theirs_out.read_bytes())
    channels, caller_tone, own_tone = pitch_of(b_files[name])
    assert channels == 1 and own_tone > 20 * caller_tone, (caller_tone, own_tone)
    assert stat.S_IMODE(theirs_out.stat().st_mode) == 0o600


def test_an_archive_opens_only_with_its_passphrase_or_its_recipients_key(stack, place_call, tmp_path, gnupg):
    parties = new_parties(stack, record=False)
    place_call(parties.a, parties.virtual_number, uas="uas_answer.xml", talk_ms=500)
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.write_text("s3cret passphrase\n")
    wrong.write_text("guess\n")
    out = tmp_path / "x.zip.gpg"
    assert masking(stack, "subject", "export", parties.a, "--passphrase-file", str(right),
                   "--out", str(out), GNUPGHOME=str(gnupg)).returncode == 0

    assert decrypt(out, wrong, gnupg).returncode != 0
    assert decrypt(out, right, gnupg).returncode == 0
    # To a privacy officer's public key: only their key opens it.
    made = subprocess.run(["gpg", "--homedir", str(gnupg), "--batch", "--passphrase", "", "--quick-gen-key",
                           "officer@example.invalid", "default", "default", "never"], capture_output=True, timeout=120)
    assert made.returncode == 0, made.stderr
    to_key = tmp_path / "k.zip.gpg"
    sent = masking(stack, "subject", "export", parties.a, "--recipient", "officer@example.invalid",
                   "--out", str(to_key), GNUPGHOME=str(gnupg))
    assert sent.returncode == 0, sent.stderr
    opened = subprocess.run(["gpg", "--homedir", str(gnupg), "--batch", "--quiet", "--decrypt", str(to_key)],
                            capture_output=True, timeout=60)
    assert opened.returncode == 0 and zipfile.is_zipfile(io.BytesIO(opened.stdout))
    # A key gpg does not have: nothing is written.
    nobody = masking(stack, "subject", "export", parties.a, "--recipient", "nobody@invalid.example",
                     "--out", str(tmp_path / "y.zip.gpg"), GNUPGHOME=str(gnupg))
    assert nobody.returncode != 0 and not (tmp_path / "y.zip.gpg").exists()
    assert not list(tmp_path.glob(".*.partial"))
    assert parties.a not in nobody.stderr + nobody.stdout


def test_a_mixed_recording_is_withheld_unless_asked_for_and_then_stated(stack, place_call, tmp_path):
    parties = new_parties(stack)  # a one-channel recording: both voices mixed
    call = place_call(parties.a, parties.virtual_number, uas="uas_answer.xml", talk_ms=2000)
    assert call.counterpart.succeeded, call.counterpart.output
    recording_id = str(wait_for_call_row(stack, parties.virtual_number, with_recording=True)["recording"]["id"])

    withheld_run = masking(stack, "subject", "export", parties.a, "--audio", "--out", str(tmp_path / "w.zip"))
    included_run = masking(stack, "subject", "export", parties.a, "--audio", "--include-mixed-audio",
                           "--out", str(tmp_path / "i.zip"))

    assert withheld_run.returncode == 0 and included_run.returncode == 0, withheld_run.stderr + included_run.stderr
    withheld = members((tmp_path / "w.zip").read_bytes())
    assert not any(n.startswith("audio/") for n in withheld)
    assert json.loads(withheld["recordings.json"])[0]["audio"] == "withheld"
    (item,) = json.loads(withheld["withheld.json"])["withheld"]
    assert item["id"] == recording_id and "both parties' voices" in item["reason"] and "s21(3)(c)" in item["reason"]
    assert "withheld" in withheld_run.stdout
    included = members((tmp_path / "i.zip").read_bytes())
    assert f"audio/{recording_id}.wav" in included
    (statement,) = json.loads(included["withheld.json"])["statements"]
    assert statement["id"] == recording_id and "other party's voice" in statement["statement"]
    assert "INCLUDED" in included_run.stdout
    audit = query(stack.dsn, "SELECT details FROM audit_log WHERE action = 'subject.exported' ORDER BY seq DESC"
                             " LIMIT 2")
    assert [json.loads(a["details"])["include_mixed_audio"] for a in audit] == [True, False]


def test_the_disclosure_log_names_recipients_and_never_reveals_legal_holds_or_law_enforcement(
        stack, place_call, tmp_path):
    parties = new_parties(stack)
    place_call(parties.a, parties.virtual_number, uas="uas_answer.xml", talk_ms=1000)
    row = wait_for_call_row(stack, parties.virtual_number, with_recording=True)
    recording = row["recording"]["id"]
    base = f"http://127.0.0.1:{stack.settings.http_port}"
    token = asyncio.run(_api_key(stack, "recordings", "subjects"))
    auth = {"Authorization": f"Bearer {token}"}
    for reason in ("ticket 77", "law-enforcement: SPF case 12"):
        assert requests.get(f"{base}/v1/recordings/{recording}", headers={**auth, "X-Audit-Reason": reason},
                            timeout=10).status_code == 200
    held = requests.post(f"{base}/v1/sessions/{row['session_id']}/legal-hold", json={"reason": "police inquiry 5"},
                         headers=auth, timeout=10)
    assert held.status_code == 200, held.text

    answer = requests.post(f"{base}/v1/subjects/export", json={"number": parties.a}, headers=auth, timeout=30)

    assert answer.status_code == 200, answer.text
    files = members(answer.content)
    disclosures = json.loads(files["disclosures.json"])
    reads = [d for d in disclosures if d["action"] == "recording.read"]
    assert len(reads) == 1 and reads[0]["recipient"].startswith("API client privacy-officer")
    assert not any(d["action"].startswith("legal_hold.") for d in disclosures)
    assert all({"actor", "source", "reason"}.isdisjoint(d) for d in disclosures)
    (client,) = [r for r in json.loads(files["disclosed_to.json"]) if r["recipient"]["kind"] == "api_key"]
    assert client["actions"] == {"recording.read": 1}, "the law-enforcement read is not counted either"
    text = b"".join(files.values())
    for secret in (b"SPF", b"police", b"ticket 77", b"law-enforcement", b"127.0.0.1"):
        assert secret not in text, secret
    (audit,) = query(stack.dsn, "SELECT details FROM audit_log WHERE action = 'subject.exported' ORDER BY seq DESC"
                                " LIMIT 1")
    withheld = json.loads(audit["details"])["withheld"]
    assert {w["reason"].split(" (")[0] for w in withheld if "seq" in w} == {
        "disclosure to law enforcement", "legal hold"}  # the hold, and the rows its answer wrote
    # The next export lists this one, without what it withheld.
    again = requests.post(f"{base}/v1/subjects/export", json={"number": parties.a}, headers=auth, timeout=30)
    text = b"".join(members(again.content).values())
    assert b'"subject.exported"' in text and b"law enforcement" not in text and b"legal hold" not in text


def test_the_api_export_of_a_tracked_request_waits_for_the_identity_check(stack):
    parties = new_parties(stack, record=False)
    base = f"http://127.0.0.1:{stack.settings.http_port}"
    auth = {"Authorization": f"Bearer {asyncio.run(_api_key(stack, 'subjects'))}"}
    outsider = {"Authorization": f"Bearer {asyncio.run(_api_key(stack, 'recordings'))}"}
    opened = requests.post(f"{base}/v1/subjects/requests", json={"kind": "access", "number": parties.a},
                           headers=auth, timeout=10).json()
    body = {"number": parties.a, "request_id": opened["id"]}

    before = requests.post(f"{base}/v1/subjects/export", json=body, headers=auth, timeout=30)
    foreign = requests.post(f"{base}/v1/subjects/requests/{opened['id']}/verify", json={"method": "callback"},
                            headers=outsider, timeout=10)
    bad = requests.post(f"{base}/v1/subjects/requests/{opened['id']}/verify", json={"method": "trust me"},
                        headers=auth, timeout=10)
    checked = requests.post(f"{base}/v1/subjects/requests/{opened['id']}/verify",
                            json={"method": "callback", "checked_by": "agent 7"}, headers=auth, timeout=10)
    after = requests.post(f"{base}/v1/subjects/export", json=body, headers=auth, timeout=30)

    assert (before.status_code, before.json()["error"]["code"]) == (409, "identity_not_verified")
    assert foreign.status_code == 403 and bad.status_code == 422
    assert checked.status_code == 200 and checked.json()["identity_verified"]["by"] == "agent 7"
    assert after.status_code == 200 and after.headers["Content-Type"] == "application/zip"
    assert requests.get(f"{base}/v1/subjects/requests/{opened['id']}", headers=auth, timeout=10).json()[
        "status"] == "done"
    actions = [r["action"] for r in query(stack.dsn, "SELECT action FROM audit_log WHERE target_id = $1 ORDER BY seq",
                                          opened["id"])]
    assert actions == ["subject.request.opened", "subject.request.verified", "subject.request.closed"]


def test_a_correction_request_is_not_answered_by_an_export(stack, tmp_path):
    parties = new_parties(stack, record=False)
    request_id = open_request(stack, parties.a, "correction")
    masking(stack, "subject", "request", "verify", request_id, "--method", "in_person", "--by", "desk 1")

    export = masking(stack, "subject", "export", parties.a, "--request", request_id, "--out",
                     str(tmp_path / "never.zip"))

    assert export.returncode == 2 and "correction" in export.stderr and list(tmp_path.iterdir()) == []
    assert query(stack.dsn, "SELECT status FROM subject_requests WHERE id = $1::uuid", request_id) == [
        {"status": "open"}]
