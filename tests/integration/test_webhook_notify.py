"""Webhook events are sent when they become due, not found by polling twice
a second: the service's own events wake its dispatcher in the process (no
NOTIFY on the call path: a notifying commit serialises with every other
one), an event another process writes (the FastAGI fallback, the CLI) is
told by the database (LISTEN/NOTIFY, migration 0035), and a listening
connection a DBA terminates is replaced."""
from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager

import asyncpg
from aiohttp import web

from bridge.privacy.audit import verify_chain
from bridge.sessions.models import SessionRequest
from bridge.store import Store
from bridge.store.outbox import NOTIFY_CHANNEL
from bridge.webhooks import DUE_BATCH, Dispatcher
from tests.integration.test_api import LOCAL_RECEIVERS, SECRET, serve_hook
from tests.support.keys import shared_keys

LONG_POLL = 60.0  # longer than any wait below: a delivery within it was told, not polled for


async def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.05)
    return False


async def listening_backends(dsn: str) -> list[int]:
    """The dispatcher's listener: its last statements are LISTEN and the check that it listens."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                                " AND application_name = 'masking-bridge'"
                                " AND (query LIKE 'LISTEN %' OR query LIKE '%pg_listening_channels%')")
        return [r["pid"] for r in rows]
    finally:
        await conn.close()


async def business_endpoint() -> tuple[web.AppRunner, str, list[str]]:
    """A webhook endpoint on loopback: its runner, its URL, the event types it got in order."""
    received: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(json.loads(await request.read())["type"])
        return web.Response(status=204)

    runner, port = await serve_hook(hook)
    return runner, f"http://127.0.0.1:{port}/hook", received


async def write_elsewhere(dsn: str, url: str, event_type: str) -> None:
    """An event written by another process, on a connection of its own."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO webhook_outbox (event_id, event_type, url, payload)"
                           " VALUES (gen_random_uuid(), $1, $2, $3)", event_type, url,
                           json.dumps({"type": event_type, "data": {}}))
    finally:
        await conn.close()


@asynccontextmanager
async def told_only(store: Store, dsn: str):
    """A dispatcher on `store`, listening, its first look done: from here on
    only being told (or LONG_POLL) sends what is written."""
    dispatcher = Dispatcher(store, SECRET, max_attempts=3, poll_interval=0.2, policy=LOCAL_RECEIVERS,
                            listening_poll_interval=LONG_POLL)
    task = asyncio.create_task(dispatcher.run())
    try:
        assert await wait_until(lambda: _listening(dsn), 10), "the dispatcher never listened"
        await asyncio.sleep(0.5)
        yield dispatcher
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_event_another_process_writes_is_sent_at_once_and_after_the_listener_is_killed(store, dsn):
    runner, url, received = await business_endpoint()
    dispatcher = Dispatcher(store, SECRET, max_attempts=3, poll_interval=0.2, policy=LOCAL_RECEIVERS,
                            listening_poll_interval=LONG_POLL)
    task = asyncio.create_task(dispatcher.run())
    try:
        assert await wait_until(lambda: _listening(dsn), 10), "the dispatcher never listened"
        await asyncio.sleep(0.5)  # its first look found nothing: it now sleeps for LONG_POLL

        await write_elsewhere(dsn, url, "call.ringing")
        assert await wait_until(lambda: _has(received, 1), 5), "an event written elsewhere was not sent when told"

        # A DBA ends the listening connection: the dispatcher polls meanwhile
        # and listens again; nothing written in between waits for LONG_POLL.
        (pid,) = await listening_backends(dsn)
        admin = await asyncpg.connect(dsn)
        try:
            await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await write_elsewhere(dsn, url, "call.answered")
        assert await wait_until(lambda: _has(received, 2), 10), "after its listener was killed, an event waited"
        assert await wait_until(lambda: _listening(dsn, other_than=pid), 15), "it did not listen again"
        await asyncio.sleep(0.5)
        await write_elsewhere(dsn, url, "call.completed")
        assert await wait_until(lambda: _has(received, 3), 5), "listening again, an event was not sent when told"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()

    assert received == ["call.ringing", "call.answered", "call.completed"]
    # The dispatcher's own connection closed with it.
    assert await wait_until(lambda: _none_listening(dsn), 5)


async def test_the_services_own_events_wake_its_dispatcher_and_notify_no_one(store, dsn):
    notified: list[str] = []
    outsider = await asyncpg.connect(dsn)
    await outsider.add_listener(NOTIFY_CHANNEL, lambda *_: notified.append("told"))
    service_store = await Store.connect(dsn, shared_keys(), outbox_notify=False)  # as the service connects
    runner, url, received = await business_endpoint()
    try:
        async with told_only(service_store, dsn):
            await service_store.outbox.enqueue("call.ringing", None, url, {})
            assert await wait_until(lambda: _has(received, 1), 5), "the service's own event waited for the long poll"
            await asyncio.sleep(0.5)
            assert notified == []  # its commit took no NOTIFY

            await write_elsewhere(dsn, url, "call.answered")  # the FastAGI fallback's, say
            assert await wait_until(lambda: _has(received, 2), 5)
            assert await wait_until(lambda: _has(notified, 1), 5)
    finally:
        await runner.cleanup()
        await service_store.close()
        await outsider.close()
    assert received == ["call.ringing", "call.answered"]


async def test_an_expiry_on_the_services_own_connections_is_sent_at_once(store, dsn):
    """session.expired is written inside the expiry's transaction, with no code
    of the service's after its commit: the commit itself tells the sender."""
    service_store = await Store.connect(dsn, shared_keys(), outbox_notify=False)
    runner, url, received = await business_endpoint()
    await service_store.numbers.add("+6560009001")
    session, _ = await service_store.sessions.create(SessionRequest(
        participant_a="+6591239001", participant_b="+6581239001", ttl_seconds=3600, record=False,
        purpose="delivery_order", webhook_url=url))
    try:
        async with told_only(service_store, dsn):
            await past_its_time(service_store, session.id)
            assert await service_store.sessions.expire_due() == [session.id]
            assert await wait_until(lambda: _has(received, 1), 5), "session.expired waited for the long poll"
    finally:
        await runner.cleanup()
        await service_store.close()
    assert received == ["session.expired"]


async def test_a_session_a_create_finds_expired_reports_to_the_default_url_at_once_and_quietly(store, dsn):
    """A create expires the sessions past their time first (the unique index on
    live participants): their session.expired goes to MASKING_WEBHOOK_URL when
    they have no URL of their own, and wakes the sender in the process after
    the create commits, with no NOTIFY on the session-create path."""
    notified: list[str] = []
    outsider = await asyncpg.connect(dsn)
    await outsider.add_listener(NOTIFY_CHANNEL, lambda *_: notified.append("told"))
    runner, url, received = await business_endpoint()
    service_store = await Store.connect(dsn, shared_keys(), outbox_notify=False, default_webhook_url=url)
    for number in ("+6560009101", "+6560009102"):
        await service_store.numbers.add(number)

    def request(n: int) -> SessionRequest:
        return SessionRequest(participant_a=f"+659123910{n}", participant_b=f"+658123910{n}", ttl_seconds=3600,
                              record=False, purpose="delivery_order")  # no webhook_url of its own

    old, _ = await service_store.sessions.create(request(1))
    try:
        async with told_only(service_store, dsn):
            await past_its_time(service_store, old.id)
            await service_store.sessions.create(request(2))
            assert await wait_until(lambda: _has(received, 1), 5), "the expiry a create found waited, or was never sent"
            await asyncio.sleep(0.5)
            assert notified == []
    finally:
        await runner.cleanup()
        await service_store.close()
        await outsider.close()
    assert received == ["session.expired"]
    assert await store.pool.fetchval("SELECT status FROM masking_sessions WHERE id = $1", old.id) == "expired"


async def test_events_delivered_together_are_each_marked_once_with_a_valid_ledger_chain(store, dsn):
    """A claim's worth of events (20, of as many sessions) are marked together
    (`DeliveryMarks`): every one delivered, one ledger row each, chained."""
    arrived: list[str] = []
    all_in = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        arrived.append(request.headers["X-Masking-Event-Id"])
        if len(arrived) >= DUE_BATCH:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), 10)  # then all are answered in one burst
        return web.Response(status=204)

    runner, port = await serve_hook(hook)
    url = f"http://127.0.0.1:{port}/hook"
    for _ in range(DUE_BATCH):
        await write_elsewhere(dsn, url, "call.completed")
    dispatcher = Dispatcher(store, SECRET, max_attempts=3, poll_interval=0.2, policy=LOCAL_RECEIVERS)
    task = asyncio.create_task(dispatcher.run())
    try:
        assert await wait_until(lambda: _delivered(store, DUE_BATCH), 20), "not every event was marked delivered"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()

    rows = [row async for row in store.audit.walk()]
    assert sorted(row.details["event_id"] for row in rows if row.action == "webhook.delivered") == sorted(arrived)
    assert len(arrived) == DUE_BATCH and verify_chain(rows, mac=store.keys.audit_mac).ok
    # Claimed together, they were marked in fewer transactions than events
    # (rows written together share the database's clock reading).
    assert len({row.at for row in rows if row.action == "webhook.delivered"}) < DUE_BATCH


async def test_a_slow_receivers_session_does_not_hold_the_other_events_marks(store, dsn, monkeypatch):
    """A batch is marked once its deliveries are done, unless a session's
    slow receiver holds it: then what was accepted is marked once it waited
    MARK_WITHIN (10 s; 0.3 s here), not at the end (its claim lasts 60 s)."""
    monkeypatch.setattr("bridge.webhooks.MARK_WITHIN", 0.3)

    async def hook(request: web.Request) -> web.Response:
        if request.headers["X-Masking-Event"] == "call.slow":
            await asyncio.sleep(0.5)
        return web.Response(status=204)

    runner, port = await serve_hook(hook)
    url = f"http://127.0.0.1:{port}/hook"
    await store.numbers.add("+6560009201")
    slow, _ = await store.sessions.create(SessionRequest(
        participant_a="+6591239201", participant_b="+6581239201", ttl_seconds=3600, record=False,
        purpose="delivery_order", webhook_url=url))
    await write_elsewhere(dsn, url, "call.fast")
    for _ in range(3):  # one session's: one after another, 0.5 s each
        await store.pool.execute("INSERT INTO webhook_outbox (event_id, event_type, session_id, url, payload)"
                                 " VALUES (gen_random_uuid(), 'call.slow', $1, $2, '{}')", slow.id, url)
    dispatcher = Dispatcher(store, SECRET, max_attempts=3, poll_interval=0.2, policy=LOCAL_RECEIVERS)
    task = asyncio.create_task(dispatcher.run())
    try:
        assert await wait_until(lambda: _delivered(store, 4), 20)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()

    marked = {row.details["event_type"]: row.at async for row in store.audit.walk()
              if row.action == "webhook.delivered" and row.details["event_type"] == "call.fast"}
    last_slow = max([row.at async for row in store.audit.walk() if row.action == "webhook.delivered"])
    assert marked["call.fast"] < last_slow, "the fast event's mark waited for the slow session's last event"


async def test_a_failed_delivery_is_retried_at_its_backoff_not_at_the_long_poll(store, dsn):
    attempts: list[float] = []

    async def hook(request: web.Request) -> web.Response:
        attempts.append(time.monotonic())
        return web.Response(status=503 if len(attempts) == 1 else 204)

    runner, port = await serve_hook(hook)
    dispatcher = Dispatcher(store, SECRET, max_attempts=3, poll_interval=0.2, policy=LOCAL_RECEIVERS,
                            listening_poll_interval=LONG_POLL)
    task = asyncio.create_task(dispatcher.run())
    try:
        assert await wait_until(lambda: _listening(dsn), 10)
        await store.outbox.enqueue("call.completed", None, f"http://127.0.0.1:{port}/hook", {})
        assert await wait_until(lambda: _has(attempts, 2), 10), "the retry waited for the long poll"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()

    assert 0.9 <= attempts[1] - attempts[0]  # backoff(0) is 1 s: not sooner either


async def _listening(dsn: str, other_than: int | None = None) -> bool:
    return any(pid != other_than for pid in await listening_backends(dsn))


async def _none_listening(dsn: str) -> bool:
    return not await listening_backends(dsn)


async def past_its_time(store: Store, session_id) -> None:
    """A session past its time, not yet expired (creating a session, or the timer, would)."""
    async with store.pool.acquire() as conn:
        await conn.execute("UPDATE masking_sessions SET created_at = now() - interval '2 hours',"
                           " expires_at = now() - interval '1 hour' WHERE id = $1", session_id)


async def _delivered(store: Store, count: int) -> bool:
    return await store.pool.fetchval("SELECT count(*) FROM webhook_outbox WHERE status = 'delivered'") >= count


async def _has(items: list, count: int) -> bool:
    return len(items) >= count
