"""The HTTP API against a real PostgreSQL: every endpoint, every error code."""
from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge.api.app import make_app
from bridge.config import Settings
from bridge.outbound.policy import OutboundPolicy
from bridge.privacy.audit import entry_json
from bridge.webhooks import Dispatcher, verify
from tests.support.ports import free_port

SECRET = "test-webhook-secret"
# The receivers below listen on loopback over plain http: allowed explicitly.
LOCAL_RECEIVERS = OutboundPolicy.parse("127.0.0.1", development=True)


@pytest.fixture
async def api(store, dsn):
    settings = Settings(database_url=dsn, quarantine_seconds=3600, webhook_secret=SECRET)
    client = TestClient(TestServer(make_app(store, settings)))
    await client.start_server()
    token, _ = await store.api_keys.create("test", ["sessions", "numbers", "recordings", "audit"])
    client.session.headers["Authorization"] = f"Bearer {token}"
    yield client
    await client.close()


async def numbers(store, *pool: str, reserved: tuple[str, ...] = ()):
    for number in pool:
        await store.numbers.add(number, reserved=number in reserved)


async def create(api, a="+6591110001", b="+6581110001", status=201, **extra):
    resp = await api.post("/v1/sessions", json={"participant_a": a, "participant_b": b, "purpose": "delivery_order", **extra})
    body = await resp.json()
    assert resp.status == status, body
    return body


def error_code(body) -> str:
    return body["error"]["code"]


async def serve_hook(handler) -> tuple[web.AppRunner, int]:
    """A business's webhook endpoint at http://127.0.0.1:<port>/hook."""
    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


# -- auth ----------------------------------------------------------------------
async def test_requests_without_a_valid_key_are_refused_and_scopes_are_enforced(api, store):
    no_key = await api.get("/v1/sessions", headers={"Authorization": ""})
    wrong = await api.get("/v1/sessions", headers={"Authorization": "Bearer mk_00000000_nope"})
    token, _ = await store.api_keys.create("narrow", ["sessions"])
    narrow = await api.get("/v1/numbers", headers={"Authorization": f"Bearer {token}"})
    await store.api_keys.revoke(token.split("_")[1])
    revoked = await api.get("/v1/sessions", headers={"Authorization": f"Bearer {token}"})

    assert (no_key.status, error_code(await no_key.json())) == (401, "unauthenticated")
    assert wrong.status == 401 and revoked.status == 401
    assert (narrow.status, error_code(await narrow.json())) == (403, "forbidden")


async def test_health_and_openapi_need_no_key(api):
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await api.get(path, headers={"Authorization": ""})).status == 200


# -- sessions --------------------------------------------------------------------
async def test_creating_a_session_allocates_a_virtual_number_and_answers_the_session(api, store):
    await numbers(store, "+6560001001")
    session = await create(api, ttl_seconds=600, external_ref="order-42", record=False)
    assert session["virtual_number"] == "+6560001001"
    assert session["status"] == "active" and session["record"] is False and session["external_ref"] == "order-42"
    fetched = await (await api.get(f"/v1/sessions/{session['id']}")).json()
    assert fetched == session
    listed = await (await api.get("/v1/sessions", params={"external_ref": "order-42"})).json()
    assert [s["id"] for s in listed["sessions"]] == [session["id"]]


async def test_the_same_idempotency_key_returns_the_same_session_never_a_second(api, store):
    await numbers(store, "+6560001001", "+6560001002")
    headers = {"Idempotency-Key": "order-42-create"}
    body = {"participant_a": "+6591110001", "participant_b": "+6581110001", "purpose": "delivery_order"}
    first = await api.post("/v1/sessions", json=body, headers=headers)
    replays = await asyncio.gather(*(api.post("/v1/sessions", json=body, headers=headers) for _ in range(5)))
    other = await api.post("/v1/sessions", json={**body, "participant_b": "+6581110002", "purpose": "delivery_order"}, headers=headers)

    first_body = await first.json()
    assert first.status == 201
    for replay in replays:
        assert replay.status == 200 and (await replay.json())["id"] == first_body["id"]
    assert (other.status, error_code(await other.json())) == (422, "idempotency_key_reused")
    listed = await (await api.get("/v1/sessions")).json()
    assert len(listed["sessions"]) == 1


@pytest.mark.parametrize("body, status, code, field", [
    ("not json", 400, "malformed_json", None),
    ([1, 2], 400, "malformed_json", None),
    ({"participant_b": "+6581110001", "purpose": "delivery_order"}, 422, "invalid_field", "participant_a"),
    ({"participant_a": "+65123", "participant_b": "+6581110001", "purpose": "delivery_order"}, 422, "invalid_number", "participant_a"),
    ({"participant_a": 6591110001, "participant_b": "+6581110001", "purpose": "delivery_order"}, 422, "invalid_field", "participant_a"),
    ({"participant_a": "+6591110001", "participant_b": "+6591110001", "purpose": "delivery_order"}, 422, "invalid_field", "participant_b"),
    ({"participant_a": "+6591110001", "participant_b": "+6581110001", "purpose": "delivery_order", "ttl_seconds": 0}, 422, "invalid_field",
     "ttl_seconds"),
    ({"participant_a": "+6591110001", "participant_b": "+6581110001", "purpose": "delivery_order", "ttl_seconds": "60"}, 422, "invalid_field",
     "ttl_seconds"),
    ({"participant_a": "+6591110001", "participant_b": "+6581110001", "purpose": "delivery_order", "record": "yes"}, 422, "invalid_field",
     "record"),
    ({"participant_a": "+6591110001", "participant_b": "+6581110001", "purpose": "delivery_order", "ttl_mode": "forever"}, 422,
     "invalid_field", "ttl_mode"),
    ({"participant_a": "+6591110001", "participant_b": "+6581110001", "purpose": "delivery_order", "webhook_url": "ftp://x"}, 422,
     "invalid_field", "webhook_url"),
    ({"participant_a": "+6591110001", "participant_b": "+6581110001", "purpose": "delivery_order", "colour": "red"}, 422, "invalid_field",
     "colour"),
])
async def test_malformed_session_requests_get_a_precise_error(api, store, body, status, code, field):
    await numbers(store, "+6560001001")
    data = body if isinstance(body, str) else json.dumps(body)
    resp = await api.post("/v1/sessions", data=data, headers={"Content-Type": "application/json"})
    answer = await resp.json()
    assert (resp.status, answer["error"]["code"]) == (status, code)
    assert answer["error"].get("field") == field
    assert "6591110001" not in answer["error"]["message"] and "65123" not in answer["error"]["message"]


async def test_an_exhausted_pool_is_a_409_with_counts(api, store):
    await numbers(store, "+6560001001")
    await create(api)
    resp = await api.post("/v1/sessions", json={"participant_a": "+6591110001", "participant_b": "+6581110002", "purpose": "delivery_order"})
    body = await resp.json()
    assert (resp.status, error_code(body)) == (409, "pool_exhausted")
    assert body["error"]["total_numbers"] == 1


async def test_extending_and_closing_a_session(api, store):
    await numbers(store, "+6560001001")
    session = await create(api, ttl_seconds=60)
    extended = await (await api.patch(f"/v1/sessions/{session['id']}", json={"ttl_seconds": 7200})).json()
    assert extended["expires_at"] > session["expires_at"] and extended["ttl_seconds"] == 7200

    closed = await api.delete(f"/v1/sessions/{session['id']}")
    again = await api.delete(f"/v1/sessions/{session['id']}")
    patch_closed = await api.patch(f"/v1/sessions/{session['id']}", json={"ttl_seconds": 60})
    assert (await closed.json())["status"] == "closed"
    assert (again.status, error_code(await again.json())) == (409, "session_not_active")
    assert patch_closed.status == 409


async def test_unknown_sessions_are_404(api):
    for path in (f"/v1/sessions/{uuid.uuid4()}", "/v1/sessions/not-a-uuid", f"/v1/calls/{uuid.uuid4()}",
                 f"/v1/recordings/{uuid.uuid4()}"):
        resp = await api.get(path)
        assert (resp.status, error_code(await resp.json())) == (404, "not_found"), path


async def test_a_session_past_its_ttl_is_expired(api, store):
    await numbers(store, "+6560001001")
    session = await create(api, ttl_seconds=1)
    await asyncio.sleep(1.2)
    assert (await (await api.get(f"/v1/sessions/{session['id']}")).json())["status"] == "expired"
    expired = await (await api.get("/v1/sessions", params={"status": "expired"})).json()
    assert [s["id"] for s in expired["sessions"]] == [session["id"]]


# -- pool rules --------------------------------------------------------------------
async def test_reserved_numbers_are_never_auto_allocated_but_can_be_assigned(api, store):
    await numbers(store, "+6560001001", "+6560001002", reserved=("+6560001001",))
    auto = await create(api)
    explicit = await create(api, b="+6581110002", virtual_number="+6560001001")
    assert auto["virtual_number"] == "+6560001002" and explicit["virtual_number"] == "+6560001001"


async def test_a_participant_never_holds_one_number_in_two_live_sessions(api, store):
    await numbers(store, "+6560001001", "+6560001002")
    first = await create(api)
    second = await create(api, b="+6581110002")
    clash = await api.post("/v1/sessions", json={"participant_a": "+6591110001", "participant_b": "+6581110003", "purpose": "delivery_order",
                                                 "virtual_number": first["virtual_number"]})
    assert first["virtual_number"] != second["virtual_number"]
    assert (clash.status, error_code(await clash.json())) == (409, "number_in_use")


async def test_least_recently_used_number_first_and_country_match(api, store):
    await numbers(store, "+12025550101", "+6560001001", "+6560001002")
    sg = await create(api)  # SG participants get an SG number although the US one is older
    assert sg["virtual_number"].startswith("+65")
    other_sg = await create(api, a="+6591110002", b="+6581110002")
    assert other_sg["virtual_number"] != sg["virtual_number"], "least recently used first"
    us = await create(api, a="+12025550199", b="+12025550198")
    assert us["virtual_number"] == "+12025550101"


async def test_quarantine_keeps_a_number_from_a_participants_new_counterpart(api, store):
    await numbers(store, "+6560001001", "+6560001002")
    first = await create(api)
    await api.delete(f"/v1/sessions/{first['id']}")
    # Same customer, new driver: not the number the old driver was saved under.
    second = await create(api, b="+6581110009")
    assert second["virtual_number"] != first["virtual_number"]


async def test_prefer_sticky_reuses_the_number_the_pair_had(api, store):
    await numbers(store, "+6560001001", "+6560001002")
    first = await create(api)
    await api.delete(f"/v1/sessions/{first['id']}")
    again = await create(api, number_selection="prefer_sticky")
    assert again["virtual_number"] == first["virtual_number"]


async def test_parallel_creates_on_a_small_pool_never_double_book_and_never_fail_badly(api, store):
    await numbers(store, "+6560001001", "+6560001002", "+6560001003")
    customers = [f"+659111{i:04d}" for i in range(4)]
    drivers = [f"+658111{i:04d}" for i in range(4)]
    requests = [{"participant_a": customers[i % 4], "participant_b": drivers[(i * 3) % 4], "purpose": "delivery_order"} for i in range(40)]

    responses = await asyncio.gather(*(api.post("/v1/sessions", json=r) for r in requests))

    statuses = [r.status for r in responses]
    assert set(statuses) <= {201, 409}, statuses
    held = set()
    for resp in responses:
        if resp.status == 201:
            session = await resp.json()
            for participant in (session["participant_a"], session["participant_b"]):
                key = (participant, session["virtual_number"])
                assert key not in held, f"double booked {key}"
                held.add(key)
        else:
            assert error_code(await resp.json()) in ("pool_exhausted", "number_in_use")


# -- numbers -----------------------------------------------------------------------
async def test_numbers_can_be_added_listed_and_retired_only_when_unused(api, store):
    added = await api.post("/v1/numbers", json={"number": "+6560001001"})
    duplicate = await api.post("/v1/numbers", json={"number": "+6560001001"})
    bad = await api.post("/v1/numbers", json={"number": "12"})
    session = await create(api)
    in_use = await api.delete("/v1/numbers/%2B6560001001")
    await api.delete(f"/v1/sessions/{session['id']}")
    retired = await api.delete("/v1/numbers/%2B6560001001")
    missing = await api.delete("/v1/numbers/%2B6560009999")

    assert added.status == 201 and (await added.json())["country"] == "SG"
    assert (duplicate.status, error_code(await duplicate.json())) == (409, "number_exists")
    assert (bad.status, error_code(await bad.json())) == (422, "invalid_number")
    in_use_body = await in_use.json()
    assert (in_use.status, error_code(in_use_body)) == (409, "number_in_use")
    assert in_use_body["error"]["session_ids"] == [session["id"]]
    assert retired.status == 204 and missing.status == 404
    listed = await (await api.get("/v1/numbers", params={"status": "retired"})).json()
    assert [n["number"] for n in listed["numbers"]] == ["+6560001001"]


# -- calls and recordings --------------------------------------------------------------
async def recorded_call(store, session: dict, audio: Path) -> tuple[uuid.UUID, uuid.UUID]:
    """An answered call of `session` and its recording, `audio`: (call id, recording id)."""
    call_id, recording_id = uuid.uuid4(), uuid.uuid4()
    audio.write_bytes(b"RIFF" + bytes(range(256)) * 4)
    async with store.pool.acquire() as conn:
        await conn.execute("INSERT INTO calls (id, session_id, virtual_number, direction, caller_channel_id,"
                           " started_at, disposition) VALUES ($1, $2, $3, 'a_to_b', 'x', now(), 'answered')",
                           call_id, uuid.UUID(session["id"]), session["virtual_number"])
        await conn.execute("INSERT INTO recordings (id, call_id, storage_path, format, bytes, duration_seconds,"
                           " sha256) VALUES ($1, $2, $3, 'wav', $4, 1.5, $5)", recording_id, call_id, str(audio),
                           audio.stat().st_size, "0" * 64)
    return call_id, recording_id


async def test_calls_and_recording_audio_with_range(api, store, tmp_path: Path):
    await numbers(store, "+6560001001")
    session = await create(api)
    audio = tmp_path / "rec.wav"
    call_id, recording_id = await recorded_call(store, session, audio)

    calls = await (await api.get("/v1/calls", params={"session_id": session["id"]})).json()
    call = await (await api.get(f"/v1/calls/{call_id}")).json()
    meta = await (await api.get(f"/v1/recordings/{recording_id}")).json()
    part = await api.get(f"/v1/recordings/{recording_id}/audio", headers={"Range": "bytes=4-103"})
    token, _ = await store.api_keys.create("no-recordings", ["sessions"])
    forbidden = await api.get(f"/v1/recordings/{recording_id}/audio", headers={"Authorization": f"Bearer {token}"})

    assert [c["id"] for c in calls["calls"]] == [str(call_id)] and call["recording_id"] == str(recording_id)
    assert meta["bytes"] == audio.stat().st_size and meta["session_id"] == session["id"]
    assert meta["sealed"] is False and meta["shredded_at"] is None  # stored before sealing: still served
    assert part.status == 206 and await part.read() == audio.read_bytes()[4:104]
    assert forbidden.status == 403


# -- audit ----------------------------------------------------------------------------------
async def test_reading_a_recording_is_audited_with_the_key_its_address_and_the_reason(api, store, tmp_path):
    await numbers(store, "+6560001001")
    session = await create(api)
    call_id, recording_id = await recorded_call(store, session, tmp_path / "rec.wav")
    prefix = (await store.api_keys.list())[0]["prefix"]

    await api.get(f"/v1/recordings/{recording_id}", headers={
        "X-Audit-Reason": "  complaint 77 from +6591110001 ", "X-Forwarded-For": "203.0.113.9"})
    await api.get(f"/v1/recordings/{recording_id}/audio")
    listed = await api.get("/v1/audit", params={"session_id": session["id"]})

    entries = [e for e in (await listed.json())["entries"] if e["action"].startswith("recording.")]
    assert [(e["action"], e["reason"]) for e in entries] == [
        ("recording.audio", None), ("recording.read", "complaint 77 from +65****0001")]
    read = entries[1]
    assert read["actor"] == f"apikey:{prefix}:test"
    assert read["source"] == "127.0.0.1", "X-Forwarded-For is not trusted unless a setting says so"
    assert (read["target_type"], read["target_id"]) == ("recording", str(recording_id))
    assert read["details"] == {"call_id": str(call_id), "purpose": "delivery_order", "account": "default"}
    assert "6591110001" not in json.dumps(entries)


async def test_behind_a_trusted_proxy_the_audited_address_is_the_one_it_appended(api, store, dsn, tmp_path):
    await numbers(store, "+6560001001")
    _, recording_id = await recorded_call(store, await create(api), tmp_path / "rec.wav")
    proxied = make_app(store, Settings(database_url=dsn, trust_forwarded_for=True))
    async with TestClient(TestServer(proxied)) as client:
        await client.get(f"/v1/recordings/{recording_id}", headers={
            "Authorization": api.session.headers["Authorization"], "X-Forwarded-For": "198.51.100.1, 203.0.113.9"})
    assert [row.source for row in await store.audit.list(action="recording.read")] == ["203.0.113.9"]


async def test_pool_changes_are_audited_with_the_number_masked_and_keyed(api, store):
    added = await api.post("/v1/numbers", json={"number": "+6560001001"}, headers={"X-Audit-Reason": "new range"})
    duplicate = await api.post("/v1/numbers", json={"number": "+6560001001"})
    retired = await api.delete("/v1/numbers/%2B6560001001")
    again = await api.delete("/v1/numbers/%2B6560001001")  # already retired: nothing changes

    rows = await store.audit.list()
    assert (added.status, duplicate.status, retired.status, again.status) == (201, 409, 204, 204)
    assert [(r.action, r.target_type, r.target_id, r.reason) for r in rows] == [
        ("number.retired", "number", "+65****1001", None), ("number.added", "number", "+65****1001", "new range")]
    assert {r.subject_hash for r in rows} == {store.keys.lookup_hash("+6560001001")}
    assert "6560001001" not in json.dumps([entry_json(r) for r in rows])


async def test_the_audit_trail_needs_the_audit_scope_and_validates_its_filters(api, store):
    token, _ = await store.api_keys.create("no-audit", ["sessions", "numbers", "recordings"])
    forbidden = await api.get("/v1/audit", headers={"Authorization": f"Bearer {token}"})
    bad_since = await api.get("/v1/audit", params={"since": "yesterday"})
    bad_session = await api.get("/v1/audit", params={"session_id": "nope"})
    await api.post("/v1/numbers", json={"number": "+6560001001"})
    recent = await api.get("/v1/audit", params={"since": "2020-01-01T00:00:00", "action": "number.added"})
    future = await api.get("/v1/audit", params={"since": "2999-01-01T00:00:00+08:00"})

    assert (forbidden.status, error_code(await forbidden.json())) == (403, "forbidden")
    assert (await bad_since.json())["error"]["field"] == "since" and bad_session.status == 422
    assert [e["action"] for e in (await recent.json())["entries"]] == ["number.added"]
    assert (await future.json())["entries"] == []


async def test_metrics_never_carry_a_phone_number(api, store):
    await numbers(store, "+6560001001")
    await create(api)
    text = await (await api.get("/metrics")).text()
    assert "masking_pool_numbers_in_use 1" in text
    assert "6560001001" not in text and "6591110001" not in text


# -- webhooks ---------------------------------------------------------------------------
async def test_webhooks_are_signed_retried_and_dead_lettered(api, store):
    received: list[tuple[dict, bool]] = []
    failing = {"left": 2}

    async def receiver(request: web.Request) -> web.Response:
        body = await request.read()
        if failing["left"]:
            failing["left"] -= 1
            return web.Response(status=500)
        ok = verify(SECRET, request.headers["X-Masking-Timestamp"], body, request.headers["X-Masking-Signature"])
        received.append((json.loads(body), ok))
        return web.Response(status=204)

    runner, port = await serve_hook(receiver)
    session_id = uuid.uuid4()
    await store.outbox.enqueue("call.completed", None, f"http://127.0.0.1:{port}/hook", {"session_id": str(session_id)})
    await store.outbox.enqueue("call.completed", None, f"http://127.0.0.1:{free_port()}/nobody", {"x": 1})
    dispatcher = Dispatcher(store, SECRET, max_attempts=3, poll_interval=0.05, policy=LOCAL_RECEIVERS)
    task = asyncio.create_task(dispatcher.run())
    try:
        # Backoff is 1 s then 2 s: both outcomes settle within about 4 s.
        for _ in range(100):
            events = (await (await api.get("/v1/webhooks/events")).json())["events"]
            if received and {e["status"] for e in events} == {"dead", "delivered"}:
                break
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await runner.cleanup()

    assert received == [(received[0][0], True)] and received[0][0]["data"] == {"session_id": str(session_id)}
    statuses = sorted((e["status"], e["attempts"]) for e in events)
    assert statuses == [("dead", 3), ("delivered", 3)]
    dead = (await (await api.get("/v1/webhooks/events", params={"status": "dead"})).json())["events"]
    assert len(dead) == 1 and dead[0]["last_error"]
    assert (await (await api.post("/v1/webhooks/events/retry")).json()) == {"requeued": 1}


async def test_a_sessions_events_arrive_in_order_even_when_one_is_retried(api, store):
    await numbers(store, "+6560001001")
    session = await create(api)
    received: list[str] = []
    refused = {"once": True}

    async def receiver(request: web.Request) -> web.Response:
        event = json.loads(await request.read())
        if event["type"] == "call.ringing" and refused["once"]:
            refused["once"] = False
            return web.Response(status=503)
        received.append(event["type"])
        return web.Response(status=204)

    runner, port = await serve_hook(receiver)
    for event_type in ("call.ringing", "call.answered", "call.completed"):
        await store.outbox.enqueue(event_type, uuid.UUID(session["id"]), f"http://127.0.0.1:{port}/hook", {})
    task = asyncio.create_task(Dispatcher(store, SECRET, max_attempts=5, poll_interval=0.05,
                                                policy=LOCAL_RECEIVERS).run())
    try:
        for _ in range(60):
            if len(received) == 3:
                break
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await runner.cleanup()

    assert received == ["call.ringing", "call.answered", "call.completed"]
