"""The breach workbench on real PostgreSQL, from real disclosure rows: an API
key reads sessions over HTTP (the rows the service writes), and the privacy
officer works the incident from the command line: open (the clock runs, and
shows overdue in the listing and on /metrics), scope by the key and a time
range, assess, draft the PDPC notification (no number in it), export the
affected individuals' contacts encrypted with gpg (decryptable with the
passphrase only), record the notifications, close."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import tempfile
from datetime import datetime, timedelta, timezone

import pytest

from tests.integration.test_api import api, create, numbers  # noqa: F401 (fixture; `store` comes from conftest)
from tests.integration.test_audit import operator  # noqa: F401 (fixture)
from tests.integration.test_cli import masking
from tests.integration.test_privacy import number_spellings

pytestmark = pytest.mark.skipif(not shutil.which("gpg"), reason="gpg is not installed")


@pytest.fixture
def gnupg_home():
    """A keyring of the test's own (short path: gpg-agent's socket lives in it); its agent stopped after."""
    home = tempfile.mkdtemp(prefix="gpg", dir="/tmp")
    os.chmod(home, 0o700)
    yield home
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], env={**os.environ, "GNUPGHOME": home}, capture_output=True)
    shutil.rmtree(home, ignore_errors=True)


async def cli(operator, *args: str, **env: str):
    return await asyncio.to_thread(masking, operator, "incident", *args, **env)


def gpg_decrypt(path, passphrase_file, home: str) -> subprocess.CompletedProcess:
    return subprocess.run(["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase-file",
                           str(passphrase_file), "--decrypt", str(path)], capture_output=True,
                          env={**os.environ, "GNUPGHOME": home}, timeout=30)


async def leak(api, store, pool: list[str], parties: list[tuple[str, str]]) -> tuple[str, list[dict]]:
    """Sessions between `parties`, read one by one with a key that leaks: its actor name, the sessions."""
    await numbers(store, *pool)
    sessions = [await create(api, a=a, b=b) for a, b in parties]
    token, row = await store.api_keys.create("leaky-partner", ["sessions"])
    for session in sessions[:-1]:  # the last one it never reads
        resp = await api.get(f"/v1/sessions/{session['id']}", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200
    await api.get(f"/v1/sessions/{sessions[-1]['id']}")  # read by another key: outside the incident
    return f"apikey:{row['prefix']}", sessions


def overdue_gauge(metrics_text: str, clock: str) -> float:
    series = f'masking_privacy_overdue{{clock="{clock}"}}'
    line = next(line for line in metrics_text.splitlines() if line.startswith(series))
    return float(line.split()[-1])


async def test_a_leaked_key_is_scoped_assessed_drafted_contacted_encrypted_and_closed(api, store, operator, tmp_path,
                                                                                     gnupg_home):
    parties = [("+6591230001", "+6581230001"), ("+6591230002", "+6581230002"), ("+6591230003", "+6581230003")]
    actor, _sessions = await leak(api, store, ["+6563210001", "+6563210002", "+6563210003"], parties)
    affected = {n for pair in parties[:-1] for n in pair}
    everyone = {n for pair in parties for n in pair}
    aware = (datetime.now(timezone.utc) - timedelta(days=40)).date().isoformat()
    since = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()

    opened = await cli(operator, "open", "partner key leaked on a paste site", "--aware", aware, "--json")
    assert opened.returncode == 0, opened.stderr
    incident = json.loads(opened.stdout)
    listed = json.loads((await cli(operator, "list", "--overdue", "--json")).stdout)["incidents"]
    gauge = overdue_gauge(await (await api.get("/metrics")).text(), "incident_assessment")
    scoped = await cli(operator, "scope", incident["id"], "--actor", actor, "--from", since, "--json")
    early_close = await cli(operator, "close", incident["id"], "--decision", "nothing to see")
    assessed = await cli(operator, "assess", incident["id"], "--significant-harm", "yes", "--json")
    overdue_after = json.loads((await cli(operator, "list", "--overdue", "--json")).stdout)["incidents"]
    shown = json.loads((await cli(operator, "show", incident["id"])).stdout)
    draft_path, contacts_path = tmp_path / "pdpc-draft.md", tmp_path / "contacts.csv.gpg"
    drafted = await cli(operator, "draft", incident["id"], "--out", str(draft_path))
    passphrase, wrong = tmp_path / "passphrase", tmp_path / "wrong"
    passphrase.write_text("correct horse battery staple\n")
    wrong.write_text("not the passphrase\n")
    contacts = await cli(operator, "contacts", incident["id"], "--out", str(contacts_path), "--passphrase-file",
                         str(passphrase), GNUPGHOME=gnupg_home)
    not_yet = await cli(operator, "close", incident["id"], "--decision", "notified")
    notified = await cli(operator, "notified", incident["id"], "--pdpc", "--reference", "DBN-2026-0042",
                         "--individuals", "--json")
    closed = await cli(operator, "close", incident["id"], "--decision",
                       "key revoked; partner contract suspended; called +6591230001 back", "--json")
    closed_twice = await cli(operator, "close", incident["id"], "--decision", "again")

    assert incident["status"] == "open" and incident["overdue"] == ["incident_assessment"]
    assert [i["id"] for i in listed] == [incident["id"]] and gauge == 1
    assert scoped.returncode == 0, scoped.stderr
    scope = json.loads(scoped.stdout)
    assert scope["affected"] == len(affected) == 4 and scope["significant_scale"] is False
    assert scope["rows"] == {"session.read": 4}
    assert early_close.returncode == 1 and "not assessed" in early_close.stderr
    assessed = json.loads(assessed.stdout)
    assert (assessed["status"], assessed["notifiable"], assessed["overdue"]) == ("assessed", True, [])
    assert assessed["pdpc_due_at"] and overdue_after == []
    assert (shown["affected"], shown["rows"], shown["individuals_pending"]) == (4, {"session.read": 4}, True)
    # The draft: private, counted, and without any number in any spelling.
    assert drafted.returncode == 0, drafted.stderr
    assert stat.S_IMODE(draft_path.stat().st_mode) == 0o600
    draft = draft_path.read_text()
    assert "Affected individuals: 4 (under 500)" in draft and actor in draft and "session.read: 4" in draft
    assert [s for n in everyone for s in number_spellings(n) if s in draft] == []
    # The contacts: encrypted, private, exactly the affected four, readable with the passphrase only.
    assert contacts.returncode == 0, contacts.stderr
    assert "4 number(s), encrypted" in contacts.stdout
    blob = contacts_path.read_bytes()
    assert stat.S_IMODE(contacts_path.stat().st_mode) == 0o600
    assert [s for n in everyone for s in number_spellings(n) if s.encode() in blob] == []
    opened_list = gpg_decrypt(contacts_path, passphrase, gnupg_home)
    assert opened_list.returncode == 0, opened_list.stderr
    assert opened_list.stdout.decode().split() == ["number", *sorted(affected)]
    assert gpg_decrypt(contacts_path, wrong, gnupg_home).returncode != 0
    # Closing waits for the notifications, then records the decision (masked).
    assert not_yet.returncode == 1 and "PDPC" in not_yet.stderr
    assert notified.returncode == 0, notified.stderr
    assert json.loads(notified.stdout)["pdpc_reference"] == "DBN-2026-0042"
    closed = json.loads(closed.stdout)
    assert closed["status"] == "closed" and "+65****0001" in closed["decision"]
    assert closed_twice.returncode == 1 and "already closed" in closed_twice.stderr
    rows = await store.audit.list(target_id=incident["id"])
    assert [r.action for r in reversed(rows)] == [
        "incident.opened", "incident.scoped", "incident.assessed", "incident.drafted", "incident.contacts.exported",
        "incident.notified", "incident.closed"]
    trail = json.dumps([r.details for r in rows])
    assert [s for n in everyone for s in number_spellings(n) if s in trail] == []
    async with store.pool.acquire() as conn:
        stored = str(await conn.fetch("SELECT * FROM incidents"))
        stored += str(await conn.fetch("SELECT * FROM incident_subjects"))
    assert [s for n in everyone for s in number_spellings(n) if s in stored] == []


async def test_five_hundred_affected_make_it_notifiable_without_harm_and_a_late_notification_shows_overdue(
        api, store, operator):
    aware = (datetime.now(timezone.utc) - timedelta(days=10)).isoformat()
    opened = json.loads((await cli(operator, "open", "stolen laptop with an export", "--aware", aware,
                                   "--json")).stdout)
    assessed_at = (datetime.now(timezone.utc) - timedelta(days=5)).isoformat()
    assessed = await cli(operator, "assess", opened["id"], "--significant-harm", "no", "--affected", "500",
                         "--at", assessed_at, "--json")
    listed = await cli(operator, "list", "--overdue")
    text = await (await api.get("/metrics")).text()

    assert assessed.returncode == 0, assessed.stderr
    assessed = json.loads(assessed.stdout)
    assert assessed["notifiable"] is True and assessed["affected_source"] == "operator"
    assert assessed["overdue"] == ["incident_pdpc_notification"]
    assert opened["id"] in listed.stdout and "incident_pdpc_notification" in listed.stdout
    assert overdue_gauge(text, "incident_pdpc_notification") == 1
    assert overdue_gauge(text, "incident_assessment") == 0


async def test_an_outsider_gets_nothing_from_the_workbench(api, store, operator, tmp_path, gnupg_home):
    """Another key's reads are not in scope; the contact file is no use without the
    passphrase; gpg's absence or refusal leaves no file; a bad scope is refused."""
    parties = [("+6591240001", "+6581240001"), ("+6591240002", "+6581240002")]
    actor, _ = await leak(api, store, ["+6563220001", "+6563220002"], parties)
    opened = json.loads((await cli(operator, "open", "suspected leak", "--json")).stdout)
    since = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    other_key = await cli(operator, "scope", opened["id"], "--actor", actor + "0", "--from", since, "--json")
    backwards = await cli(operator, "scope", opened["id"], "--actor", actor, "--from", since, "--until",
                          (datetime.now(timezone.utc) - timedelta(days=2)).isoformat())
    await cli(operator, "scope", opened["id"], "--actor", actor, "--from", since)
    before_awareness = await cli(operator, "assess", opened["id"], "--significant-harm", "no", "--at",
                                 (datetime.now(timezone.utc) - timedelta(days=400)).isoformat())
    missing = tmp_path / "absent-passphrase"
    no_passphrase = await cli(operator, "contacts", opened["id"], "--out", str(tmp_path / "c.gpg"),
                              "--passphrase-file", str(missing))
    bad_recipient = await cli(operator, "contacts", opened["id"], "--out", str(tmp_path / "r.gpg"),
                              "--recipient", "nobody@example.invalid", GNUPGHOME=gnupg_home)

    assert json.loads(other_key.stdout)["affected"] == 0, "a key whose name extends another's is another key"
    assert backwards.returncode == 2 and "--until" in backwards.stderr
    assert before_awareness.returncode == 1 and "before the organisation became aware" in before_awareness.stderr
    assert no_passphrase.returncode == 2 and not (tmp_path / "c.gpg").exists()
    assert bad_recipient.returncode == 1 and "gpg failed" in bad_recipient.stderr
    assert not list(tmp_path.glob("*r.gpg*")), "a refused encryption leaves no file, partial or whole"
    for result in (other_key, backwards, no_passphrase, bad_recipient):
        assert [s for pair in parties for n in pair for s in number_spellings(n)
                if s in result.stdout + result.stderr] == []
