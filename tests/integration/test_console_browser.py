"""The console in a real browser (Debian's Chromium, driven by Playwright) on
the service the integration stack runs, with real SIPp calls through Asterisk.

What a person does and sees: signs in, watches a call appear on Live and
leave it, finds its session, plays its recording and sees the read in the
audit rows, sends a dead letter again (counted where it arrives), opens and
closes a subject request; and what an outsider meets: no cookie, a key
without the scope, a form without its CSRF token.

Screenshots of each page go to $MASKING_CONSOLE_SCREENSHOTS when set
(`scripts/console-screenshots` writes docs/console/), else beside the test.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from bridge.sessions.models import SessionRequest
from bridge.store import Store
from tests.support.ports import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ALL_SCOPES = ["console", "reveal", "recordings", "subjects", "audit"]
TALK_MS = 8000  # long enough to be watched on Live
_serial = itertools.count(1)


@pytest.fixture(scope="module")
async def chromium() -> Browser:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("Chromium is not installed: run scripts/bootstrap")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def store(stack):
    store = await Store.connect(stack.dsn, stack.keys)
    yield store
    await store.close()


@pytest.fixture
def console_url(stack) -> str:
    return f"http://127.0.0.1:{stack.settings.http_port}/console"


@pytest.fixture
def shots(tmp_path):
    """`await shot(page, name)`: a full-page screenshot for docs/console.md."""
    folder = Path(os.environ.get("MASKING_CONSOLE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)

    async def shot(page: Page, name: str) -> None:
        await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    return shot


@pytest.fixture
async def new_page(chromium):
    """A page in a browser context of its own (its own cookies), closed after the test."""
    contexts = []

    async def open_page(width: int = 1280, height: int = 860) -> Page:
        context = await chromium.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(20000)
        return page

    yield open_page
    for context in contexts:
        await context.close()


async def sign_in(page: Page, console_url: str, store: Store, scopes=ALL_SCOPES, name: str = "night-ops") -> None:
    token, _ = await store.api_keys.create(name, scopes)
    await page.goto(f"{console_url}/live")
    assert "/console/sign-in" in page.url  # no cookie yet: sent to sign in, shown nothing
    await page.get_by_label("API key").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()


async def a_session(store: Store, record: bool = True):
    n = next(_serial)
    virtual, a, b = f"+656810{n:04d}", f"+659810{n:04d}", f"+658810{n:04d}"
    await store.numbers.add(virtual)
    session, _ = await store.sessions.create(SessionRequest(
        a, b, ttl_seconds=3600, record=record, purpose="delivery_order", external_ref=f"order-{uuid.uuid4().hex[:8]}"))
    return session


async def test_operator_watches_a_real_call_on_live_finds_its_session_and_plays_its_recording(
        stack, store, place_call, new_page, console_url, shots):
    session = await a_session(store)
    page = await new_page()
    await sign_in(page, console_url, store)
    assert page.url.endswith("/console/live")

    # A real call: SIPp dials the virtual number, Asterisk hands it to the service.
    call = asyncio.create_task(asyncio.to_thread(place_call, session.participant_a, session.virtual_number,
                                                 uas="uas_answer.xml", talk_ms=TALK_MS))
    row = page.locator(f'tr.live-call[data-virtual-number="{session.virtual_number}"]')
    await row.and_(page.locator('[data-state="talking"]')).wait_for(timeout=30000)
    assert "ARI" in await row.inner_text() and str(session.id)[:8] in await row.inner_text()
    await shots(page, "live")
    result = await call
    assert result.caller.succeeded and result.counterpart.succeeded, result.caller.output
    assert result.counterpart_rtp.packets > 100  # the far end got the caller's audio
    await row.wait_for(state="detached", timeout=20000)
    answered = page.locator("#count-answered")
    await until(lambda: answered_at_least(answered, 1))  # today's counts refresh every few seconds

    # Find its session by the external reference.
    await page.get_by_role("link", name="Sessions and calls").click()
    await page.get_by_label("External reference, session or call id, or a number").fill(session.external_ref)
    await page.get_by_role("button", name="Search").click()
    await shots(page, "sessions")
    await page.get_by_role("link", name=str(session.id)[:8]).click()
    assert await page.locator("#calls-table .disposition").first.inner_text() == "answered"
    assert session.participant_a not in await page.content()

    # Play its recording: the reason first, then the audio, and the read in the audit rows.
    await until(lambda: recording_stored(store, session.id), tries=200)  # collected just after the hangup
    await page.reload()
    play = page.locator("#calls-table form[action$='/listen']").first
    await play.get_by_label("Reason (kept in the audit trail)").fill("quality review QA-7")
    await play.get_by_role("button", name="Play").click()
    player = page.locator("audio#player")
    await player.wait_for()
    await until(lambda: player.evaluate("p => p.readyState >= 1 && p.duration > 1"))  # Chromium read the WAV
    audio = await page.request.get(await player.evaluate("e => e.src"), headers={"Range": "bytes=0-3"})
    assert audio.status == 206 and await audio.body() == b"RIFF"
    audit_row = page.locator('tr.audit-row[data-action="recording.audio"]').first
    assert "quality review QA-7" in await audit_row.inner_text()
    [read] = await store.audit.list(action="recording.audio", session_id=session.id)
    assert read.reason == "quality review QA-7" and read.actor.startswith("console:")
    await shots(page, "session")


async def until(condition, tries: int = 100) -> None:
    """Poll an async `condition` from here (the page's CSP rightly forbids Playwright's own eval-based polling)."""
    for _ in range(tries):
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition never held")


async def answered_at_least(counter, n: int) -> bool:
    return int(await counter.inner_text()) >= n


async def recording_stored(store: Store, session_id) -> bool:
    return any(c["recording_id"] for c in await store.calls.list(10, session_id))


async def test_operator_sends_a_dead_letter_again_and_it_arrives(stack, store, new_page, console_url, shots):
    received: list[dict] = []
    receiver = web.Application()

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    receiver.router.add_post("/hook", hook)
    runner = web.AppRunner(receiver)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        session = await a_session(store, record=False)
        event_id = uuid.uuid4()
        await store.outbox.enqueue("call.ended", session.id, f"http://127.0.0.1:{port}/hook", {"probe": True},
                                   event_id=event_id)
        outbox_id = next(r["id"] for r in await store.outbox.list() if r["event_id"] == event_id)
        await store.outbox.failed(outbox_id, "HTTP 503 from the receiver", None)
        page = await new_page()
        await sign_in(page, console_url, store)
        await page.get_by_role("link", name="Webhooks").click()
        dead = page.locator(f'#dead-letters tr[data-event-id="{event_id}"]')
        assert "HTTP 503" in await dead.inner_text()
        await shots(page, "webhooks")
        await dead.get_by_role("button", name="Send again").click()
        assert "sent again" in await page.get_by_role("status").inner_text()
        for _ in range(100):
            if any(e["id"] == str(event_id) for e in received):
                break
            await asyncio.sleep(0.1)
        assert [e["data"] for e in received if e["id"] == str(event_id)] == [{"probe": True}]
        await page.reload()
        assert await page.locator(f'#dead-letters tr[data-event-id="{event_id}"]').count() == 0
    finally:
        await runner.cleanup()


async def test_dpo_opens_and_closes_a_subject_request(stack, store, new_page, console_url, shots):
    page = await new_page()
    await sign_in(page, console_url, store, scopes=["subjects", "audit"], name="dpo")
    assert page.url.endswith("/console/privacy")
    form = page.locator("#open-request")
    if await form.get_attribute("open") is None:
        await form.locator("summary").click()
    await form.get_by_label("Kind").select_option("access")
    await form.get_by_label("The subject's number").fill("+6591239876")
    await form.get_by_label("Notes").fill("ticket DPO-31")
    await form.get_by_role("button", name="Record the request").click()
    row = page.locator("#open-requests tr", has_text="ticket DPO-31")
    assert "+65****9876" in await row.inner_text() and "due in" in (await row.inner_text()).lower()
    assert "+6591239876" not in await page.content()
    assert "Intact." in await page.locator("#audit-result").inner_text()
    await shots(page, "privacy")
    await row.locator("summary", has_text="Close").click()
    await row.get_by_label("Outcome").select_option("done")
    await row.get_by_role("button", name="Close the request").click()
    assert await page.locator("#open-requests tr", has_text="ticket DPO-31").count() == 0
    closed = page.locator("#closed-requests tr", has_text="+65****9876")
    assert "done" in await closed.inner_text()
    assert [r.notes for r in await store.subjects.list_requests("done")] == ["ticket DPO-31"]


async def test_pool_page_shows_the_numbers_by_kind_and_a_chart(stack, store, new_page, console_url, shots):
    await a_session(store)
    page = await new_page()
    await sign_in(page, console_url, store)
    await page.get_by_role("link", name="Pool").click()
    assert int(await page.locator("#pool-in-use").inner_text()) >= 1
    await page.locator("#pool-chart canvas").wait_for()  # uPlot drew it
    await shots(page, "pool")


async def test_live_is_readable_on_a_phone(stack, store, new_page, console_url, shots):
    page = await new_page(width=390, height=844)
    await sign_in(page, console_url, store)
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390  # only tables scroll sideways
    await shots(page, "live-phone")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"


async def test_the_console_refuses_no_cookie_a_key_without_the_scope_and_a_form_without_its_token(
        stack, store, new_page, console_url, shots):
    stranger = await new_page()
    response = await stranger.goto(f"{console_url}/privacy")
    assert "/console/sign-in" in stranger.url and response.status == 200
    assert await stranger.get_by_label("API key").count() == 1
    await shots(stranger, "sign-in")

    numbers_only = await new_page()
    await sign_in(numbers_only, console_url, store, scopes=["numbers"], name="pool-admin")
    response = await numbers_only.goto(f"{console_url}/privacy")
    assert response.status == 403 and "lacks the scope" in await numbers_only.locator("main").inner_text()
    assert await numbers_only.get_by_role("link", name="Privacy desk").count() == 0

    forger = await new_page()
    await sign_in(forger, console_url, store)
    await forger.locator('form[action="/console/sign-out"] input[name="csrf_token"]').evaluate("e => e.remove()")
    async with forger.expect_navigation():
        await forger.get_by_role("button", name="Sign out").click()
    assert "CSRF token" in await forger.locator("main").inner_text()
    response = await forger.goto(f"{console_url}/live")
    assert response.status == 200 and forger.url.endswith("/console/live")  # still signed in: nothing happened
