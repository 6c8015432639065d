"""A second tenant's API key: it sees nothing of another account's sessions,
calls, recordings, webhook events or wait audio, cannot change or use them,
and cannot even learn that they exist (a foreign id answers exactly as a
missing one). And every read that shows a number is in that person's export."""
from __future__ import annotations

import asyncio
import io
import json
import uuid
import zipfile

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.api.app import make_app
from bridge.config import Settings
from tests.integration.test_api import numbers, recorded_call
from tests.integration.test_audit import operator  # noqa: F401 (fixture)
from tests.integration.test_cli import masking
from tests.integration.test_wait_audio import tone_wav

A, B = "+6591110001", "+6581110001"


class Tenant:
    def __init__(self, client: TestClient, token: str):
        self.client, self.headers = client, {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, **kwargs) -> tuple[int, dict | None]:
        resp = await self.client.request(method, path, headers={**self.headers, **kwargs.pop("headers", {})},
                                         **kwargs)
        text = await resp.text()
        return resp.status, json.loads(text) if text else None


@pytest.fixture
async def client(store, dsn, tmp_path):
    placed = []

    async def place_call(session, request):
        placed.append(session.id)
        return uuid.uuid4()

    settings = Settings(database_url=dsn, recording_dir=tmp_path / "recordings",
                        asterisk_sounds_dir=tmp_path / "sounds")
    client = TestClient(TestServer(make_app(store, settings, place_call=place_call)))
    client.placed = placed
    await client.start_server()
    yield client
    await client.close()


async def tenant(store, client, account: str, *scopes: str) -> Tenant:
    token, _ = await store.api_keys.create(f"{account}-key", list(scopes or ("sessions", "recordings")),
                                           account=account)
    return Tenant(client, token)


async def test_a_second_tenants_key_can_neither_see_nor_touch_another_accounts_sessions(store, client, tmp_path):
    await numbers(store, "+6560001001", "+6560001002")
    shop_a, shop_b = await tenant(store, client, "shop-a"), await tenant(store, client, "shop-b")
    status, session = await shop_a.call("POST", "/v1/sessions", json={
        "participant_a": A, "participant_b": B, "purpose": "delivery_order", "external_ref": "order-1"})
    assert status == 201 and session["account"] == "shop-a"
    sid = session["id"]
    call_id, recording_id = await recorded_call(store, session, tmp_path / "rec.wav")
    await store.outbox.enqueue("call.completed", uuid.UUID(sid), "https://shop-a.example/hook", {})
    missing = str(uuid.uuid4())

    # Every way in, for the other tenant's id and for an id that exists nowhere.
    attempts = {
        "read": ("GET", "/v1/sessions/{}", {}),
        "extend": ("PATCH", "/v1/sessions/{}", {"json": {"ttl_seconds": 60}}),
        "close": ("DELETE", "/v1/sessions/{}", {}),
        "click-to-call": ("POST", "/v1/sessions/{}/calls", {"json": {"from": "a"}}),
    }
    for what, (method, path, kwargs) in attempts.items():
        foreign = await shop_b.call(method, path.format(sid), **kwargs)
        absent = await shop_b.call(method, path.format(missing), **kwargs)
        assert foreign[0] == 404, what
        assert foreign == absent, f"{what}: a foreign session must answer exactly like a missing one"
    for what, path, absent_path in [("call", f"/v1/calls/{call_id}", f"/v1/calls/{missing}"),
                                    ("recording", f"/v1/recordings/{recording_id}", f"/v1/recordings/{missing}"),
                                    ("audio", f"/v1/recordings/{recording_id}/audio",
                                     f"/v1/recordings/{missing}/audio")]:
        foreign, absent = await shop_b.call("GET", path), await shop_b.call("GET", absent_path)
        assert foreign[0] == 404 and foreign == absent, what

    listings = [await shop_b.call("GET", path) for path in (
        "/v1/sessions", "/v1/sessions?external_ref=order-1", f"/v1/calls?session_id={sid}", "/v1/calls",
        "/v1/webhooks/events")]
    assert [body for _, body in listings] == [{"sessions": []}, {"sessions": []}, {"calls": []}, {"calls": []},
                                              {"events": []}]
    assert client.placed == [], "no call was placed on the other tenant's session"
    # The owner still has it all, untouched.
    status, own = await shop_a.call("GET", f"/v1/sessions/{sid}")
    assert status == 200 and own["status"] == "active" and own["expires_at"] == session["expires_at"]
    assert (await shop_a.call("GET", f"/v1/recordings/{recording_id}"))[0] == 200
    assert [e["session_id"] for e in (await shop_a.call("GET", "/v1/webhooks/events"))[1]["events"]] == [sid]


async def test_a_second_tenant_cannot_retry_another_accounts_dead_webhooks(store, client):
    await numbers(store, "+6560001001")
    shop_a, shop_b = await tenant(store, client, "shop-a"), await tenant(store, client, "shop-b")
    _, session = await shop_a.call("POST", "/v1/sessions", json={
        "participant_a": A, "participant_b": B, "purpose": "delivery_order"})
    await store.outbox.enqueue("call.completed", uuid.UUID(session["id"]), "https://shop-a.example/hook", {})
    (due,) = await store.outbox.due()
    await store.outbox.failed(due["id"], "timeout", None)

    assert await shop_b.call("POST", "/v1/webhooks/events/retry") == (200, {"requeued": 0})
    assert await shop_a.call("POST", "/v1/webhooks/events/retry") == (200, {"requeued": 1})


async def test_wait_audio_is_its_accounts_alone(store, client):
    await numbers(store, "+6560001001")
    shop_a, shop_b = await tenant(store, client, "shop-a"), await tenant(store, client, "shop-b")
    status, audio = await shop_a.call("POST", "/v1/wait-audio", data=tone_wav(0.2),
                                      headers={"Content-Type": "audio/wav"})
    assert status == 201, audio

    listed = await shop_b.call("GET", "/v1/wait-audio")
    named = await shop_b.call("POST", "/v1/sessions", json={
        "participant_a": A, "participant_b": B, "purpose": "delivery_order", "wait_audio_id": audio["id"]})
    deleted = await shop_b.call("DELETE", f"/v1/wait-audio/{audio['id']}")

    assert listed == (200, {"wait_audio": []})
    assert named[0] == 422 and named[1]["error"]["field"] == "wait_audio_id"
    assert deleted[0] == 404
    assert [w["id"] for w in (await shop_a.call("GET", "/v1/wait-audio"))[1]["wait_audio"]] == [audio["id"]]


async def test_keys_of_one_account_share_its_sessions(store, client):
    await numbers(store, "+6560001001")
    first, second = await tenant(store, client, "shop-a"), await tenant(store, client, "shop-a")
    _, session = await first.call("POST", "/v1/sessions", json={
        "participant_a": A, "participant_b": B, "purpose": "delivery_order"})

    assert (await second.call("GET", f"/v1/sessions/{session['id']}"))[0] == 200
    assert [k["account"] for k in await store.api_keys.list()] == ["shop-a", "shop-a"]


async def test_every_read_of_a_number_is_in_that_persons_export(store, client):
    await numbers(store, "+6560001001")
    # Keys made as they always were: the default account's.
    shop = Tenant(client, (await store.api_keys.create("shop", ["sessions"]))[0])
    officer = Tenant(client, (await store.api_keys.create("dpo", ["subjects"]))[0])
    _, session = await shop.call("POST", "/v1/sessions", json={
        "participant_a": A, "participant_b": B, "purpose": "delivery_order"})
    sid = session["id"]

    await shop.call("GET", f"/v1/sessions/{sid}", headers={"X-Audit-Reason": "support ticket 9"})
    await shop.call("GET", "/v1/sessions")
    await shop.call("PATCH", f"/v1/sessions/{sid}", json={"ttl_seconds": 600})
    await shop.call("DELETE", f"/v1/sessions/{sid}")

    for number, role in ((A, "a"), (B, "b")):
        resp = await officer.client.post("/v1/subjects/export", json={"number": number},
                                         headers=officer.headers)
        assert resp.status == 200, await resp.text()
        with zipfile.ZipFile(io.BytesIO(await resp.read())) as archive:
            disclosures = json.loads(archive.read("disclosures.json"))
        reads = [d for d in disclosures if d["action"] == "session.read" and d["about"] == "your number"]
        assert [(d["details"]["via"], d["details"]["participant"]) for d in reads] == [
            ("get", role), ("list", role), ("extend", role), ("close", role)]
        # The subject is told the recipient, not the actor or its internal reason (PDPA s21, issue 14).
        assert all(d["recipient"] == "API client shop" and d["session_id"] == sid for d in reads)
        assert "reason" not in reads[0] and reads[0]["details"]["account"] == "default"
        assert A not in json.dumps(disclosures) and B not in json.dumps(disclosures)


async def test_the_operator_gives_a_key_its_account_and_sees_it_in_the_listing(store, operator):
    created = await asyncio.to_thread(masking, operator, "apikeys", "create", "--name", "crm", "--account", "shop-b")
    default = await asyncio.to_thread(masking, operator, "apikeys", "create", "--name", "ops")
    refused = await asyncio.to_thread(masking, operator, "apikeys", "create", "--name", "x", "--account", "Shop B")
    table = await asyncio.to_thread(masking, operator, "apikeys", "list")
    listed = await asyncio.to_thread(masking, operator, "apikeys", "list", "--json")

    assert json.loads(created.stdout)["account"] == "shop-b" and json.loads(default.stdout)["account"] == "default"
    assert refused.returncode == 2 and "--account" in refused.stderr
    assert "account" in table.stdout.splitlines()[0] and "shop-b" in table.stdout
    assert [(k["name"], k["account"]) for k in json.loads(listed.stdout)["api_keys"]] == [
        ("crm", "shop-b"), ("ops", "default")]


async def test_a_list_read_writes_a_row_per_number_shown_and_the_chain_stays_intact(store, client, operator):
    await numbers(store, "+6560001001", "+6560001002", "+6560001003")
    shop = await tenant(store, client, "shop-a")
    for n in range(3):
        await shop.call("POST", "/v1/sessions", json={
            "participant_a": f"+659111000{n}", "participant_b": f"+658111000{n}", "purpose": "delivery_order"})

    status, listed = await shop.call("GET", "/v1/sessions")
    verified = await asyncio.to_thread(masking, operator, "audit", "verify")

    assert status == 200 and len(listed["sessions"]) == 3
    rows = await store.audit.list(action="session.read")
    assert sorted((str(r.session_id), r.details["participant"]) for r in rows) == sorted(
        (s["id"], role) for s in listed["sessions"] for role in "ab")
    assert {r.subject_hash for r in rows} == {store.keys.lookup_hash(s[f"participant_{role}"])
                                              for s in listed["sessions"] for role in "ab"}
    assert verified.returncode == 0, verified.stdout + verified.stderr
