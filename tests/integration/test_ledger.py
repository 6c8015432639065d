"""The disclosure ledger on real PostgreSQL: every read that shows a number or
a call, every session created, every out-of-session question and every
delivered webhook is an audit row naming who received it (and, for what left
the bridge, the host and its country); `masking audit list` finds them by
actor, time range and subject in any spelling; a subject's export, after a
real SIPp call, says whom their data went to; and no row holds a number."""
from __future__ import annotations

import asyncio
import io
import json
import uuid
import zipfile

from aiohttp import web

from bridge.calls.out_of_session import ask_business
from bridge.config import Settings
from bridge.outbound.policy import OutboundPolicy
from bridge.sessions.models import SessionRequest
from bridge.sessions.resolve import Connect, Reject, RejectReason
from bridge.webhooks import Dispatcher
from tests.integration.conftest import query
from tests.integration.test_api import numbers, recorded_call
from tests.integration.test_api_call import Receiver, call_api
from tests.integration.test_audit import operator  # noqa: F401 (fixture)
from tests.integration.test_cli import masking
from tests.integration.test_outbound_http import receiver
from tests.integration.test_privacy import leaks, pg_dump
from tests.integration.test_tenancy import client, tenant  # noqa: F401 (fixture)

A, B = "+6591120001", "+6581120001"
LOCAL = "127.0.0.1"


async def ledger_rows(store, action: str | None = None) -> list[dict]:
    rows = await store.pool.fetch("SELECT * FROM audit_log WHERE $1::text IS NULL OR action = $1 ORDER BY seq",
                                  action)
    return [dict(r, details=json.loads(r["details"])) for r in rows]


# -- reads and creations through the API ----------------------------------------------------------
async def test_api_creation_and_reads_write_a_row_per_number_and_per_call_naming_the_key_and_account(
        store, client, tmp_path):
    await numbers(store, "+6560112001")
    shop = await tenant(store, client, "shop-a")
    status, session = await shop.call("POST", "/v1/sessions", json={
        "participant_a": A, "participant_b": B, "purpose": "delivery_order"})
    assert status == 201
    call_id, _ = await recorded_call(store, session, tmp_path / "rec.wav")

    assert (await shop.call("GET", f"/v1/sessions/{session['id']}"))[0] == 200
    assert (await shop.call("GET", "/v1/sessions"))[0] == 200
    assert (await shop.call("GET", f"/v1/calls/{call_id}"))[0] == 200
    assert (await shop.call("GET", f"/v1/calls?session_id={session['id']}"))[0] == 200

    created = await ledger_rows(store, "session.created")
    assert sorted((r["subject_hash"], r["details"]["participant"]) for r in created) == sorted(
        [(store.keys.lookup_hash(A), "a"), (store.keys.lookup_hash(B), "b")])
    assert {(r["actor"], r["details"]["account"], r["details"]["replay"]) for r in created} == \
        {("apikey:" + created[0]["actor"].split(":")[1] + ":shop-a-key", "shop-a", False)}
    reads = await ledger_rows(store, "session.read")
    assert sorted(r["details"]["via"] for r in reads) == ["get", "get", "list", "list"]
    assert {r["subject_hash"] for r in reads} == {store.keys.lookup_hash(A), store.keys.lookup_hash(B)}
    calls = await ledger_rows(store, "call.read")
    assert [(r["target_id"], str(r["session_id"]), r["details"]["via"]) for r in calls] == \
        [(str(call_id), session["id"], "get"), (str(call_id), session["id"], "list")]
    assert all(r["actor"] == created[0]["actor"] for r in reads + calls)


async def test_a_second_tenants_refused_reads_write_no_disclosure(store, client, tmp_path):
    await numbers(store, "+6560112002")
    shop_a, shop_b = await tenant(store, client, "shop-a"), await tenant(store, client, "shop-b")
    status, session = await shop_a.call("POST", "/v1/sessions", json={
        "participant_a": A, "participant_b": B, "purpose": "delivery_order"})
    call_id, recording_id = await recorded_call(store, session, tmp_path / "rec.wav")
    before = len(await ledger_rows(store))

    for path in (f"/v1/sessions/{session['id']}", f"/v1/calls/{call_id}", f"/v1/recordings/{recording_id}",
                 f"/v1/recordings/{recording_id}/audio"):
        assert (await shop_b.call("GET", path))[0] == 404, path
    listed = [await shop_b.call("GET", path) for path in ("/v1/sessions", f"/v1/calls?session_id={session['id']}")]

    assert listed == [(200, {"sessions": []}), (200, {"calls": []})]
    after = await ledger_rows(store)
    assert len(after) == before and not any("shop-b" in r["actor"] for r in after)


# -- reads and creations from the CLI --------------------------------------------------------
async def test_cli_creation_show_and_json_listing_are_disclosures_to_the_operator_and_a_table_is_not(
        store, operator, tmp_path):
    await numbers(store, "+6560112003")
    created = masking(operator, "sessions", "create", "--purpose", "delivery_order", "--a", A, "--b", B)
    assert created.returncode == 0, created.stderr
    session_id = json.loads(created.stdout)["id"]
    call_id, _ = await recorded_call(store, json.loads(created.stdout), tmp_path / "rec.wav")
    assert masking(operator, "sessions", "list").returncode == 0  # a table without numbers
    rows_after_table = await ledger_rows(store)
    assert masking(operator, "sessions", "show", session_id).returncode == 0
    assert masking(operator, "sessions", "list", "--json").returncode == 0

    rows = await ledger_rows(store)
    assert [(r["action"], r["details"]["via"]) for r in rows_after_table] == [("session.created", "cli")] * 2
    assert [(r["action"], r["details"]["via"]) for r in rows[2:]] == \
        [("session.read", "cli show")] * 2 + [("session.read", "cli list")] * 2
    assert {r["actor"][:4] for r in rows} == {"cli:"} and {r["source"][:4] for r in rows} == {"cli@"}
    assert {r["subject_hash"] for r in rows} == {store.keys.lookup_hash(A), store.keys.lookup_hash(B)}
    assert masking(operator, "calls", "show", str(call_id)).returncode == 0
    (call_read,) = await ledger_rows(store, "call.read")
    assert (call_read["actor"], call_read["target_id"], str(call_read["session_id"])) == \
        (rows[0]["actor"], str(call_id), session_id)


# -- what leaves the bridge ---------------------------------------------------------------
async def test_each_delivered_webhook_names_its_host_and_the_mapped_country_or_unknown(store):
    await numbers(store, "+6560112004")
    session, _ = await store.sessions.create(SessionRequest(A, B, ttl_seconds=600, record=False,
                                                            purpose="delivery_order"))

    async def hook(request: web.Request) -> web.Response:
        return web.Response(status=204)

    runner, url = await receiver(hook, LOCAL)
    policy = OutboundPolicy.parse(LOCAL, development=True)
    try:
        for countries in ({LOCAL: "SG"}, {}):
            await store.outbox.enqueue("call.completed", session.id, url + "?token=s3cret", {"x": 1})
            dispatcher = Dispatcher(store, "secret", 1, poll_interval=0.05, policy=policy, countries=countries)
            task = asyncio.create_task(dispatcher.run())
            try:
                for _ in range(100):
                    if all(r["status"] == "delivered" for r in await store.outbox.list()):
                        break
                    await asyncio.sleep(0.05)
            finally:
                task.cancel()
    finally:
        await runner.cleanup()

    rows = await ledger_rows(store, "webhook.delivered")
    assert [(r["target_id"], r["details"]["host"], r["details"]["country"]) for r in rows] == \
        [(LOCAL, LOCAL, "SG"), (LOCAL, LOCAL, "unknown")]
    assert {(r["actor"], r["session_id"], r["details"]["event_type"]) for r in rows} == \
        {("service", session.id, "call.completed")}
    assert "s3cret" not in json.dumps([r["details"] for r in rows])


DECLARING = """
[purposes.delivery_order]
description = "Webhooks to one country"
webhooks = { hosts = ["127.0.0.1"], countries = ["JP"] }
notice = { text = "x", sha256 = "%(sha)s" }

[purposes.out_of_session]
description = "Webhooks to one country"
webhooks = { hosts = ["127.0.0.1"], countries = ["MY"] }
notice = { text = "x", sha256 = "%(sha)s" }

[purposes.two_countries]
description = "Webhooks to two countries: none is the host's"
webhooks = { hosts = ["127.0.0.1"], countries = ["SG", "JP"] }
notice = { text = "x", sha256 = "%(sha)s" }
""" % {"sha": "0" * 64}


async def test_an_unmapped_hosts_country_is_the_one_its_sessions_purpose_declares_and_the_mapping_still_wins(
        store, dsn, tmp_path):
    from bridge.privacy.purposes import load_registry

    path = tmp_path / "purposes.toml"
    path.write_text(DECLARING)
    registry = load_registry(path)
    await numbers(store, "+6560112006", "+6560112007", "+6560112008")
    declared, several, mapped = [(await store.sessions.create(SessionRequest(
        A, B, ttl_seconds=600, record=False, purpose=purpose)))[0]
        for purpose in ("delivery_order", "two_countries", "delivery_order")]

    async def hook(request: web.Request) -> web.Response:
        return web.Response(status=204)

    runner, url = await receiver(hook, LOCAL)
    policy = OutboundPolicy.parse(LOCAL, development=True)
    try:
        for session, countries in ((declared, {}), (several, {}), (mapped, {LOCAL: "SG"})):
            await store.outbox.enqueue("call.completed", session.id, url, {"x": 1})
            dispatcher = Dispatcher(store, "secret", 1, poll_interval=0.05, policy=policy, countries=countries,
                                    registry=registry)
            task = asyncio.create_task(dispatcher.run())
            try:
                for _ in range(100):
                    if all(r["status"] == "delivered" for r in await store.outbox.list()):
                        break
                    await asyncio.sleep(0.05)
            finally:
                task.cancel()
        # The out-of-session question: the out_of_session purpose's one country.
        settings = Settings(database_url=dsn, out_of_session_url=url, development=True, outbound_allow=LOCAL,
                            purpose_registry=path)
        await ask_business(store, settings, "+6560112006", A, Reject(RejectReason.NOT_A_PARTICIPANT))
    finally:
        await runner.cleanup()

    rows = await ledger_rows(store, "webhook.delivered")
    assert [(r["session_id"], r["details"]["host"], r["details"]["country"]) for r in rows] == \
        [(declared.id, LOCAL, "JP"), (several.id, LOCAL, "unknown"), (mapped.id, LOCAL, "SG")]
    (asked,) = await ledger_rows(store, "out_of_session.asked")
    assert (asked["target_id"], asked["details"]["country"]) == (LOCAL, "MY")


async def test_the_out_of_session_question_is_a_disclosure_of_the_callers_number_to_the_business(store, dsn):
    await numbers(store, "+6560112005")
    answers = [{"action": "decline"}, {"action": "connect", "counterpart": B}, {"action": "decline"}]

    async def business(request: web.Request) -> web.Response:
        return web.json_response(answers.pop(0))

    runner, url = await receiver(business, LOCAL)
    settings = Settings(database_url=dsn, out_of_session_url=url, development=True, outbound_allow=LOCAL,
                        destination_countries=f"{LOCAL}=SG")
    rejection = Reject(RejectReason.NOT_A_PARTICIPANT)
    try:
        declined = await ask_business(store, settings, "+6560112005", A, rejection)
        connected = await ask_business(store, settings, "+6560112005", A, rejection)
        withheld = await ask_business(store, settings, "+6560112005", None, rejection)
    finally:
        await runner.cleanup()

    assert declined == rejection == withheld and isinstance(connected, Connect)
    asked = await ledger_rows(store, "out_of_session.asked")
    assert [(r["subject_hash"], r["target_id"], r["details"]["country"], r["details"]["reason"]) for r in asked] == \
        [(store.keys.lookup_hash(A), LOCAL, "SG", "not_a_participant")] * 2 + \
        [(None, LOCAL, "SG", "not_a_participant")]
    assert [r["details"]["caller"] for r in asked] == ["known", "known", "withheld"]
    created = await ledger_rows(store, "session.created")
    assert {(r["actor"], r["session_id"], r["details"]["via"]) for r in created} == \
        {("service", connected.session.id, "out_of_session")}


# -- finding rows -----------------------------------------------------------------------------
async def test_audit_list_filters_by_actor_time_range_and_subject_in_any_spelling(store, client, operator, dsn):
    await numbers(store, "+6560112006", "+6560112007")
    shop = await tenant(store, client, "shop-a")
    status, mine = await shop.call("POST", "/v1/sessions", json={
        "participant_a": A, "participant_b": B, "purpose": "delivery_order"})
    assert masking(operator, "sessions", "create", "--purpose", "delivery_order", "--a", "+6591120009",
                   "--b", "+6581120009").returncode == 0
    await store.outbox.enqueue("call.completed", uuid.UUID(mine["id"]), "https://hooks.example/x", {})
    await store.disclosures.webhooks_delivered([({"session_id": uuid.UUID(mine["id"]), "event_type": "call.completed",
                                                  "event_id": uuid.uuid4()}, {"host": "hooks.example",
                                                                              "country": "unknown"})])
    everything = await ledger_rows(store)
    key_actor = everything[0]["actor"]

    def listed(*args: str) -> list[dict]:
        result = masking(operator, "audit", "list", "--json", "--limit", "100", *args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["entries"]

    by_key = listed("--actor", key_actor)
    assert {e["actor"] for e in by_key} == {key_actor} and len(by_key) == 2
    assert listed("--actor", ":".join(key_actor.split(":")[:2])) == by_key, "apikey:<prefix> names the key"
    assert {e["actor"] for e in listed("--actor", "cli")} == {everything[2]["actor"]}
    for spelling in (A, A.lstrip("+"), A[3:]):  # +65..., 65..., the national 8 digits
        found = listed("--subject", spelling)
        assert sorted(e["action"] for e in found) == ["session.created", "webhook.delivered"], spelling
    assert listed("--subject", "+6591120009")[0]["action"] == "session.created"
    # A range by the rows' own times: --since inclusive, --until exclusive. The
    # rows of one disclosure (a session's two numbers) were written at one time.
    assert everything[2]["at"] == everything[3]["at"] < everything[4]["at"]
    since, until = everything[2]["at"].isoformat(), everything[4]["at"].isoformat()
    assert [e["seq"] for e in listed("--since", since, "--until", until)] == \
        [everything[3]["seq"], everything[2]["seq"]]
    assert masking(operator, "audit", "list", "--since", "yesterday").returncode == 2
    bad = masking(operator, "audit", "list", "--subject", "12ab")
    assert bad.returncode == 2 and "12ab" not in bad.stderr
    assert masking(operator, "audit", "verify").returncode == 0
    assert leaks(await asyncio.to_thread(pg_dump, dsn), [A, B, "+6591120009", "+6581120009"]) == []


# -- after a real call ---------------------------------------------------------------------------
def test_an_export_after_a_real_call_says_the_data_went_to_the_key_that_made_and_read_it_and_the_webhook_host(
        stack, place_call, tmp_path):
    a, b, virtual = "+6594120001", "+6584120001", "+6564120001"
    made = masking(stack, "apikeys", "create", "--name", "ledger-app", "--scope", "sessions", "--scope", "numbers")
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["token"]
    hooks = Receiver()
    assert call_api(stack, token, "POST", "/v1/numbers", {"number": virtual})[0] == 201
    status, body = call_api(stack, token, "POST", "/v1/sessions", {
        "participant_a": a, "participant_b": b, "purpose": "delivery_order", "webhook_url": hooks.url,
        "virtual_number": virtual})  # the stack's pool holds other tests' numbers too
    assert status == 201, body
    session = json.loads(body)

    call = place_call(a, virtual, uas="uas_answer.xml", talk_ms=1500)
    assert call.counterpart.succeeded, call.counterpart.output
    hooks.wait_for("call.completed")
    assert call_api(stack, token, "GET", f"/v1/sessions/{session['id']}")[0] == 200
    delivered = []
    for _ in range(100):  # the delivery's row commits just after the receiver answers
        delivered = query(stack.dsn, "SELECT * FROM audit_log WHERE action = 'webhook.delivered'"
                                     " AND session_id = $1", uuid.UUID(session["id"]))
        if len(delivered) >= len(hooks.requests):
            break
        asyncio.run(asyncio.sleep(0.1))
    exported = masking(stack, "subject", "export", a[3:], "--out", str(tmp_path / "a.zip"))

    assert exported.returncode == 0, exported.stderr
    with zipfile.ZipFile(io.BytesIO((tmp_path / "a.zip").read_bytes())) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    assert {"sessions.json", "calls.json", "recordings.json", "disclosures.json", "disclosed_to.json"} <= set(files)
    recipients = {item["recipient"]["kind"]: item for item in json.loads(files["disclosed_to.json"])}
    key = recipients["api_key"]
    assert key["recipient"]["name"].endswith(":ledger-app") and key["recipient"]["account"]
    assert {"session.created", "session.read"} <= set(key["actions"]) and session["id"] in key["session_ids"]
    hook = recipients["webhook"]
    # Unmapped host: the country its purpose declares (tests/support/purposes.toml: delivery_order, SG).
    assert hook["recipient"] == {"kind": "webhook", "name": "127.0.0.1", "country": "SG"}
    assert hook["actions"]["webhook.delivered"] == len(delivered) >= 3  # ringing, answered, completed...
    assert b.encode() not in files["disclosed_to.json"] and b[3:].encode() not in files["disclosed_to.json"]
    listed = masking(stack, "audit", "list", "--subject", a.lstrip("+"), "--json", "--limit", "200")
    assert {"session.created", "session.read", "webhook.delivered"} <= \
        {e["action"] for e in json.loads(listed.stdout)["entries"]}
    assert leaks(pg_dump(stack.dsn), [a, b]) == []
    verified = masking(stack, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
