"""The web console over HTTP against a real PostgreSQL, as an outsider would
try it: no cookie, a key without the scope, a form without its CSRF token, a
stolen or ended sign-in, a grant to play a recording used by someone else.
(The browser tests, with real calls, are in test_console_browser.py.)"""
from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.api.app import make_app
from bridge.clock import utcnow
from bridge.config import Settings
from bridge.console.app import install_console
from bridge.sessions.models import SessionRequest
from bridge.store.recordings import RecordingRow

A, B, VIRTUAL = "+6591230001", "+6581230001", "+6560001234"
ALL_SCOPES = ["console", "reveal", "recordings", "subjects", "audit"]


class Console:
    """A browser's view of the console: a cookie jar, and the CSRF token of the last page."""

    def __init__(self, client: TestClient):
        self.client = client
        self.csrf = ""

    async def get(self, path: str, status: int = 200, **kwargs) -> str:
        resp = await self.client.get(path, allow_redirects=False, **kwargs)
        text = await resp.text()
        assert resp.status == status, (resp.status, text[:2000])
        found = re.search(r'name="csrf_token" value="([^"]*)"', text)
        if found:
            self.csrf = found.group(1)
        return text

    async def post(self, path: str, data: dict, status: int = 303, csrf: bool = True):
        body = {**({"csrf_token": self.csrf} if csrf else {}), **data}
        resp = await self.client.post(path, data=body, allow_redirects=False)
        text = await resp.read()
        assert resp.status == status, (resp.status, text[:2000])
        return resp, text

    async def sign_in(self, token: str, status: int = 303):
        await self.get("/console/sign-in")
        return await self.post("/console/sign-in", {"api_key": token}, status=status)


@pytest.fixture
async def server(store, dsn):
    async with store.pool.acquire() as conn:
        await conn.execute("TRUNCATE pool_samples, console_sessions")
    app = make_app(store, Settings(database_url=dsn, purge_interval_seconds=3600))
    install_console(app)
    server = TestServer(app)
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
async def browser(server):
    """A fresh browser (its own cookie jar) on the console."""
    clients = []

    async def open_browser() -> Console:
        client = TestClient(server)
        await client.start_server()
        clients.append(client)
        return Console(client)

    yield open_browser
    for client in clients:
        await client.close()


async def signed_in(store, browser, scopes=ALL_SCOPES) -> Console:
    token, _ = await store.api_keys.create(f"ops-{uuid.uuid4().hex[:4]}", scopes)
    console = await browser()
    await console.sign_in(token)
    return console


async def a_session(store, external_ref: str = "order-42"):
    await store.numbers.add(VIRTUAL)
    session, _ = await store.sessions.create(SessionRequest(A, B, ttl_seconds=3600, record=True, purpose="delivery_order",
                                                            external_ref=external_ref))
    return session


# -- signing in, and what is refused without it ---------------------------------------
async def test_a_page_without_a_sign_in_sends_you_to_sign_in_and_shows_nothing(browser):
    console = await browser()
    for path in ("/console/live", "/console/sessions", "/console/pool", "/console/webhooks", "/console/privacy"):
        resp = await console.client.get(path, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"].startswith("/console/sign-in?next=/console/")
    resp = await console.client.get("/console/live/events", allow_redirects=False)
    assert resp.status == 401


async def test_a_form_without_a_sign_in_is_refused_and_changes_nothing(store, browser):
    await store.outbox.enqueue("call.ended", None, "http://127.0.0.1:9/hook", {})
    outbox_id = (await store.outbox.list())[0]["id"]
    await store.outbox.failed(outbox_id, "refused", None)
    console = await browser()
    await console.post("/console/webhooks/retry", {"event": str(outbox_id)}, status=401, csrf=False)
    assert (await store.outbox.list())[0]["status"] == "dead"


async def test_sign_in_sets_an_httponly_samesite_strict_cookie_limited_to_the_console(store, browser):
    token, _ = await store.api_keys.create("ops", ["console"])
    console = await browser()
    resp, _ = await console.sign_in(token)
    cookie = resp.cookies["masking_console"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/console"
    assert not cookie["secure"]  # plain http here; over https (or a trusted proxy's) it is Secure
    assert 0 < int(cookie["max-age"]) <= 480 * 60
    assert token not in cookie.value
    assert resp.headers["Location"] == "/console/live"
    await console.get("/console/live")


async def test_sign_in_returns_to_the_page_asked_for_but_never_to_another_site(store, browser):
    token, _ = await store.api_keys.create("ops", ["console"])
    console = await browser()
    page = await console.get("/console/sign-in?next=/console/pool")
    assert 'value="/console/pool"' in page
    resp, _ = await console.post("/console/sign-in", {"api_key": token, "next": "/console/pool"})
    assert resp.headers["Location"] == "/console/pool"
    other = await browser()
    await other.get("/console/sign-in")
    resp, _ = await other.post("/console/sign-in", {"api_key": token, "next": "//evil.example/console/"})
    assert resp.headers["Location"] == "/console/live"


async def test_a_key_without_a_console_scope_cannot_sign_in(store, browser):
    token, _ = await store.api_keys.create("player", ["recordings"])
    console = await browser()
    resp, page = await console.sign_in(token, status=403)
    assert "masking_console" not in resp.cookies and b"no console scope" in page


async def test_an_unknown_or_revoked_key_cannot_sign_in(store, browser):
    token, row = await store.api_keys.create("ops", ["console"])
    await store.api_keys.revoke(row["prefix"])
    console = await browser()
    resp, _ = await console.sign_in(token, status=401)
    assert "masking_console" not in resp.cookies
    await console.sign_in("mk_nothing_here", status=401)


async def test_the_sign_in_form_without_its_own_token_is_refused(store, browser):
    token, _ = await store.api_keys.create("ops", ["console"])
    console = await browser()
    await console.get("/console/sign-in")
    resp, _ = await console.post("/console/sign-in", {"api_key": token}, status=403, csrf=False)
    assert "masking_console" not in resp.cookies


async def test_a_page_outside_the_keys_scopes_is_refused(store, browser):
    console = await signed_in(store, browser, ["numbers"])
    await console.get("/console/pool")
    for path in ("/console/privacy", "/console/live", "/console/sessions"):
        page = await console.get(path, status=403)
        assert "lacks the scope" in page
    assert 'href="/console/privacy"' not in await console.get("/console/pool")


async def test_a_form_without_its_csrf_token_or_with_another_sign_ins_is_refused(store, browser):
    await store.outbox.enqueue("call.ended", None, "http://127.0.0.1:9/hook", {})
    outbox_id = (await store.outbox.list())[0]["id"]
    await store.outbox.failed(outbox_id, "refused", None)
    mine, theirs = await signed_in(store, browser), await signed_in(store, browser)
    await mine.get("/console/webhooks")
    await theirs.get("/console/webhooks")
    await mine.post("/console/webhooks/retry", {"event": str(outbox_id)}, status=403, csrf=False)
    await mine.post("/console/webhooks/retry", {"event": str(outbox_id), "csrf_token": theirs.csrf}, status=403,
                    csrf=False)
    await mine.post("/console/webhooks/retry", {"event": str(outbox_id), "csrf_token": ""}, status=403, csrf=False)
    assert (await store.outbox.list())[0]["status"] == "dead"
    await mine.post("/console/webhooks/retry", {"event": str(outbox_id)})
    assert (await store.outbox.list())[0]["status"] == "pending"


async def test_signing_out_ends_the_sign_in_for_good(store, browser):
    console = await signed_in(store, browser)
    await console.get("/console/live")
    cookie = console.client.session.cookie_jar.filter_cookies(console.client.make_url("/console/live"))
    resp, _ = await console.post("/console/sign-out", {})
    assert resp.headers["Location"] == "/console/sign-in"
    replay = await browser()
    replay.client.session.cookie_jar.update_cookies({"masking_console": cookie["masking_console"].value},
                                                    console.client.make_url("/console/"))
    await replay.get("/console/live", status=303)
    actions = [e.action for e in await store.audit.list(limit=10)]
    assert "console.signed_out" in actions and "console.signed_in" in actions


async def test_revoking_the_key_or_the_sign_in_expiring_ends_it_at_once(store, browser):
    token, row = await store.api_keys.create("ops", ["console"])
    console = await browser()
    await console.sign_in(token)
    await console.get("/console/live")
    await store.api_keys.revoke(row["prefix"])
    await console.get("/console/live", status=303)
    later = await signed_in(store, browser)
    async with store.pool.acquire() as conn:
        await conn.execute("UPDATE console_sessions SET created_at = now() - interval '2 days',"
                           " expires_at = now() - interval '1 second'")
    await later.get("/console/live", status=303)


async def test_console_pages_are_not_cached_framed_or_allowed_foreign_scripts(store, browser):
    console = await signed_in(store, browser)
    resp = await console.client.get("/console/live")
    assert resp.headers["Cache-Control"] == "no-store" and resp.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    static = await console.client.get("/console/static/vendor/htmx-2.0.11.min.js")
    assert static.status == 200 and "max-age" in static.headers["Cache-Control"]


# -- personal data: masked, revealed with a reason, audited -----------------------------
async def test_sessions_show_numbers_masked_and_a_number_search_is_audited(store, browser):
    session = await a_session(store)
    console = await signed_in(store, browser)
    await console.get("/console/sessions")
    _, page = await console.post("/console/sessions/search", {"q": A}, status=200)
    page = page.decode()
    assert str(session.id)[:8] in page and "+65****0001" in page
    assert A not in page and B not in page and A.lstrip("+") not in page
    searched = await store.audit.list(action="console.number_searched")
    assert searched and searched[0].subject_hash == store.keys.lookup_hash(A)
    _, by_ref = await console.post("/console/sessions/search", {"q": "order-42"}, status=200)
    assert str(session.id)[:8] in by_ref.decode()
    _, by_virtual = await console.post("/console/sessions/search", {"q": VIRTUAL}, status=200)
    assert str(session.id)[:8] in by_virtual.decode()
    assert len(await store.audit.list(action="console.number_searched")) == 1  # a virtual number is ours


async def test_an_external_reference_with_a_number_in_it_is_searched_as_a_reference(store, browser):
    session = await a_session(store, external_ref="order-98123456")  # phonenumbers would read +6598123456
    console = await signed_in(store, browser)
    await console.get("/console/sessions")
    _, page = await console.post("/console/sessions/search", {"q": "order-98123456"}, status=200)
    assert str(session.id)[:8] in page.decode()
    assert await store.audit.list(action="console.number_searched") == []


async def test_viewing_a_session_is_audited_and_shows_no_number_in_clear(store, browser):
    session = await a_session(store)
    console = await signed_in(store, browser)
    page = await console.get(f"/console/sessions/{session.id}")
    assert A not in page and B not in page and "+65****0001" in page
    viewed = await store.audit.list(action="console.session.viewed", session_id=session.id)
    assert viewed and viewed[0].actor.startswith("console:")


async def test_revealing_a_number_needs_the_reveal_scope_and_a_reason_and_is_audited(store, browser):
    session = await a_session(store)
    plain = await signed_in(store, browser, ["console"])
    page = await plain.get(f"/console/sessions/{session.id}")
    assert "Reveal" not in page
    await plain.post(f"/console/sessions/{session.id}/reveal", {"role": "a", "reason": "complaint"}, status=403)
    console = await signed_in(store, browser)
    await console.get(f"/console/sessions/{session.id}")
    await console.post(f"/console/sessions/{session.id}/reveal", {"role": "a"}, status=422)
    assert await store.audit.list(action="number.revealed") == []
    _, page = await console.post(f"/console/sessions/{session.id}/reveal", {"role": "a", "reason": "ticket 7"},
                                 status=200)
    assert A in page.decode() and B not in page.decode()
    revealed = await store.audit.list(action="number.revealed")
    assert len(revealed) == 1 and revealed[0].reason == "ticket 7" and revealed[0].details["role"] == "a"
    assert revealed[0].subject_hash == store.keys.lookup_hash(A) and A not in str(revealed[0])


async def a_recording(store, tmp_path: Path, session) -> uuid.UUID:
    """A plaintext recording of a call of `session` (as stored before sealing existed)."""
    call_id, recording_id = uuid.uuid4(), uuid.uuid4()
    await store.calls.insert(call_id, VIRTUAL, "chan-1", utcnow(), session_id=session.id, disposition="answered",
                             recorded=True)
    audio = tmp_path / f"{recording_id}.wav"
    audio.write_bytes(b"RIFF" + bytes(4092))
    await store.recordings.insert(RecordingRow(recording_id, call_id, str(audio), "wav", 4096, 1.0, "0" * 64))
    return recording_id


async def test_playing_a_recording_asks_a_reason_first_and_streams_only_under_its_audit_row(store, browser, tmp_path):
    session = await a_session(store)
    recording_id = await a_recording(store, tmp_path, session)
    console = await signed_in(store, browser)
    page = await console.get(f"/console/sessions/{session.id}")
    assert f"/console/recordings/{recording_id}/listen" in page and "<audio" not in page
    await console.get(f"/console/recordings/{recording_id}/audio", status=403)
    await console.post(f"/console/recordings/{recording_id}/listen", {}, status=422)
    resp, _ = await console.post(f"/console/recordings/{recording_id}/listen", {"reason": "quality review"})
    grant = re.search(r"listen=(\d+)", resp.headers["Location"]).group(1)
    row = await store.audit.entry(int(grant))
    assert row.action == "recording.audio" and row.reason == "quality review" and row.session_id == session.id
    page = await console.get(resp.headers["Location"].split("#")[0])
    assert f"/console/recordings/{recording_id}/audio?grant={grant}" in page
    ranged = await console.client.get(f"/console/recordings/{recording_id}/audio?grant={grant}",
                                      headers={"Range": "bytes=0-3"})
    assert ranged.status == 206 and await ranged.read() == b"RIFF"
    # The grant is this sign-in's: another one, even with the same key's scopes, must give its own reason.
    other = await signed_in(store, browser)
    await other.get(f"/console/recordings/{recording_id}/audio?grant={grant}", status=403)
    await other.get(f"/console/recordings/{recording_id}/audio?grant=99999999999999999999", status=403)


async def test_playing_a_recording_needs_the_recordings_scope(store, browser, tmp_path):
    session = await a_session(store)
    recording_id = await a_recording(store, tmp_path, session)
    console = await signed_in(store, browser, ["console"])
    assert "/listen" not in await console.get(f"/console/sessions/{session.id}")
    await console.post(f"/console/recordings/{recording_id}/listen", {"reason": "curious"}, status=403)
    assert await store.audit.list(action="recording.audio") == []


# -- the pages' actions ---------------------------------------------------------------
async def test_every_page_renders_for_a_key_with_every_scope(store, browser, tmp_path):
    session = await a_session(store)
    await a_recording(store, tmp_path, session)
    await store.pool_history.record(300, 3600)
    console = await signed_in(store, browser, ALL_SCOPES + ["sessions", "numbers"])
    for path in ("/console/live", "/console/sessions", f"/console/sessions/{session.id}", "/console/pool",
                 "/console/webhooks", "/console/privacy"):
        page = await console.get(path)
        assert A not in page and B not in page, path


async def test_live_events_stream_the_calls_in_progress(store, browser):
    session = await a_session(store)
    call_id = uuid.uuid4()
    await store.calls.insert(call_id, VIRTUAL, "chan-2", utcnow(), session_id=session.id, asterisk_node="http://h:1/app")
    console = await signed_in(store, browser)
    resp = await console.client.get("/console/live/events")
    assert resp.headers["Content-Type"] == "text/event-stream"
    seen = b""
    while b"event: health" not in seen or b"event: calls" not in seen:
        seen += await resp.content.readany()
    assert str(call_id).encode() in seen and b"Recording notice" in seen
    resp.close()


async def test_stopping_the_service_ends_live_streams_at_once(store, browser, server):
    console = await signed_in(store, browser)
    resp = await console.client.get("/console/live/events")
    assert b"event:" in await resp.content.readany()
    await asyncio.wait_for(server.close(), 10)  # aiohttp would otherwise wait for the stream, up to a minute
    assert await asyncio.wait_for(resp.content.read(), 5) is not None
    resp.close()


async def test_subject_requests_open_and_close_from_the_desk(store, browser):
    console = await signed_in(store, browser, ["subjects"])
    await console.get("/console/privacy")
    await console.post("/console/privacy/requests", {"kind": "access", "number": "9123 0001", "received": "2000-01-01"},
                       status=422)
    await console.post("/console/privacy/requests", {"kind": "access", "number": A})
    [request] = await store.subjects.list_requests("open")
    assert request.subject_hint == "+65****0001"
    page = await console.get("/console/privacy")
    assert str(request.id) in page and A not in page
    await console.post(f"/console/privacy/requests/{request.id}/close", {"status": "refused", "notes": "no id given"})
    [closed] = await store.subjects.list_requests("refused")
    assert closed.id == request.id and closed.completed_by.startswith("console:")
    await console.post(f"/console/privacy/requests/{request.id}/close", {"status": "done"}, status=409)


async def test_an_export_from_the_desk_needs_the_requests_number_and_closes_it(store, browser):
    await a_session(store)
    console = await signed_in(store, browser, ["subjects"])
    await console.get("/console/privacy")
    await console.post("/console/privacy/requests", {"kind": "access", "number": A})
    [request] = await store.subjects.list_requests("open")
    await console.post(f"/console/privacy/requests/{request.id}/export", {"number": A}, status=409)  # not verified
    await console.post(f"/console/privacy/requests/{request.id}/verify", {"method": "photo_id", "checked_by": "desk"})
    await console.post(f"/console/privacy/requests/{request.id}/export", {"number": B}, status=422)
    resp, body = await console.post(f"/console/privacy/requests/{request.id}/export", {"number": A}, status=200)
    assert resp.headers["Content-Type"] == "application/zip" and body.startswith(b"PK")
    assert [r.id for r in await store.subjects.list_requests("done")] == [request.id]


async def test_legal_holds_are_placed_and_released_with_a_reason(store, browser):
    session = await a_session(store)
    console = await signed_in(store, browser, ["console", "subjects"])
    await console.get(f"/console/sessions/{session.id}")
    await console.post(f"/console/sessions/{session.id}/legal-hold", {"reason": "case 12"})
    assert (await store.sessions.get(session.id)).legal_hold_reason == "case 12"
    assert "case 12" in await console.get("/console/privacy")
    await console.post(f"/console/sessions/{session.id}/legal-hold/release", {"reason": "case closed",
                                                                              "back": "privacy"})
    assert (await store.sessions.get(session.id)).legal_hold_at is None
