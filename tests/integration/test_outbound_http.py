"""Server-side request forgery: a business names URLs the bridge sends to (a
session's webhook_url, the out-of-session URL). None of them may reach the
operator's own network, follow a redirect there, or carry back what a remote
said. A local server on 127.0.0.1 stands in for an internal service."""
from __future__ import annotations

import asyncio
import json
import socket

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge.api.app import make_app
from bridge.calls.out_of_session import ask_business
from bridge.config import Settings
from bridge.outbound.client import OutboundHttp
from bridge.outbound.policy import OutboundPolicy
from bridge.sessions.resolve import Reject, RejectReason
from bridge.webhooks import Dispatcher

SECRET = "test-webhook-secret"
ON_PREMISES = "127.0.0.2"  # a receiver the operator allows; 127.0.0.1 is the internal service


class InternalService:
    """Counts every TCP connection made to it: 'never contacted' means none at all."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host, self.connections, self.server = host, 0, None

    async def __aenter__(self) -> "InternalService":
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 22\r\n\r\ninternal admin console")
                await writer.drain()
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                pass
            writer.close()

        self.server = await asyncio.start_server(serve, self.host, 0)
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]


async def receiver(handler, host: str = ON_PREMISES) -> tuple[web.AppRunner, str]:
    """An HTTP endpoint at http://<host>:<port>/hook answered by `handler`."""
    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://{host}:{port}/hook"


async def deliver_all(store, policy: OutboundPolicy | None = None, max_attempts: int = 1) -> list[dict]:
    """Run the dispatcher until no event is pending; the outbox rows."""
    extra = {} if policy is None else {"policy": policy}
    dispatcher = Dispatcher(store, SECRET, max_attempts=max_attempts, poll_interval=0.05, **extra)
    task = asyncio.create_task(dispatcher.run())
    try:
        for _ in range(200):
            rows = await store.outbox.list()
            if rows and all(r["status"] != "pending" for r in rows):
                return rows
            await asyncio.sleep(0.05)
        raise AssertionError(f"events still pending: {rows}")
    finally:
        task.cancel()


@pytest.fixture
async def api(store, dsn):
    settings = Settings(database_url=dsn, webhook_secret=SECRET)
    client = TestClient(TestServer(make_app(store, settings)))
    await client.start_server()
    token, _ = await store.api_keys.create("test", ["sessions", "numbers"])
    client.session.headers["Authorization"] = f"Bearer {token}"
    yield client
    await client.close()


# -- webhooks ----------------------------------------------------------------------------
async def test_webhooks_to_an_internal_service_are_refused_and_it_is_never_contacted(store):
    async with InternalService() as internal:
        for url in (f"https://127.0.0.1:{internal.port}/hook", f"https://localhost:{internal.port}/hook",
                    f"https://[::ffff:127.0.0.1]:{internal.port}/hook", f"https://2130706433:{internal.port}/"):
            await store.outbox.enqueue("call.completed", None, url, {"x": 1})

        rows = await deliver_all(store)

    assert internal.connections == 0
    assert [(r["status"], r["last_error"]) for r in reversed(rows)] == [
        ("dead", "destination_not_allowed")] * 3 + [("dead", "invalid_url")]


async def test_development_mode_allows_plain_http_but_not_the_internal_network(store):
    async with InternalService() as internal:
        await store.outbox.enqueue("call.completed", None, f"http://127.0.0.1:{internal.port}/hook", {"x": 1})
        rows = await deliver_all(store, OutboundPolicy(development=True))

    assert internal.connections == 0 and rows[0]["last_error"] == "destination_not_allowed"


async def test_a_redirect_to_an_internal_service_is_not_followed(store):
    async with InternalService() as internal:
        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound(f"http://127.0.0.1:{internal.port}/admin")

        runner, url = await receiver(redirect)
        try:
            await store.outbox.enqueue("call.completed", None, url, {"x": 1})
            rows = await deliver_all(store, OutboundPolicy.parse(ON_PREMISES, development=True))
        finally:
            await runner.cleanup()

    assert internal.connections == 0
    assert (rows[0]["status"], rows[0]["last_error"]) == ("dead", "http_302")


async def test_the_error_listing_carries_a_category_never_the_remotes_text(store, api):
    async def failing(request: web.Request) -> web.Response:
        return web.Response(status=500, text="db password is hunter2", headers={"X-Debug": "stack trace"})

    closed = socket.socket()
    closed.bind((ON_PREMISES, 0))  # bound, never listening: connections are refused
    runner, url = await receiver(failing)
    try:
        await store.outbox.enqueue("call.completed", None, url, {"x": 1})
        await store.outbox.enqueue("call.completed", None,
                                   f"http://{ON_PREMISES}:{closed.getsockname()[1]}/hook", {"x": 2})
        await deliver_all(store, OutboundPolicy.parse(ON_PREMISES, development=True))
        listing = await api.get("/v1/webhooks/events")
        text = await listing.text()
    finally:
        closed.close()
        await runner.cleanup()

    errors = sorted(e["last_error"] for e in json.loads(text)["events"])
    assert errors == ["connection_refused", "http_500"]
    assert "hunter2" not in text and "stack trace" not in text and "Error" not in text


async def test_an_on_premises_receiver_in_the_allow_list_gets_its_webhooks(store):
    received = []

    async def hook(request: web.Request) -> web.Response:
        received.append(json.loads(await request.read()))
        return web.Response(status=204)

    runner, url = await receiver(hook)
    try:
        await store.outbox.enqueue("call.completed", None, url, {"x": 1})
        rows = await deliver_all(store, OutboundPolicy.parse(f"{ON_PREMISES}/32", development=True))
    finally:
        await runner.cleanup()

    assert rows[0]["status"] == "delivered" and received[0]["data"] == {"x": 1}


async def test_an_allowed_host_name_is_connected_at_the_address_that_was_checked():
    """`hooks.onprem.test` resolves nowhere but in our resolver: the request
    arrives, so the connection went to the address the policy checked."""
    received = []

    async def hook(request: web.Request) -> web.Response:
        received.append(request.headers["Host"])
        return web.Response(status=204)

    class OnPremisesDns:
        async def resolve(self, host, port=0, family=socket.AF_INET):
            return [{"hostname": host, "host": ON_PREMISES, "port": port, "family": socket.AF_INET, "proto": 0,
                     "flags": socket.AI_NUMERICHOST}]

        async def close(self):
            pass

    runner, url = await receiver(hook)
    port = url.rsplit(":", 1)[1].split("/")[0]
    try:
        policy = OutboundPolicy.parse("hooks.onprem.test", development=True)
        async with OutboundHttp(policy, 5, resolver=OnPremisesDns()) as http:
            answer = await http.post(f"http://hooks.onprem.test:{port}/hook", b"{}", {})
    finally:
        await runner.cleanup()

    assert answer.status == 204 and received == [f"hooks.onprem.test:{port}"]


# -- at session creation -------------------------------------------------------------------
@pytest.mark.parametrize(("url", "message"), [
    ("https://shop:s3cret@shop.example/hook", "must not carry credentials"),
    ("http://shop.example/hook", "must use https"),
    ("https://127.0.0.1:8080/hook", "loopback"),
    ("https://localhost/hook", "names this machine"),
    ("https://169.254.169.254/latest/meta-data/", "metadata"),
    ("https://[fd00:ec2::254]/", "metadata"),
    ("https://192.168.1.10/hook", "private"),
])
async def test_a_session_naming_a_forbidden_webhook_url_is_refused_with_a_precise_error(api, store, url, message):
    await store.numbers.add("+6560001001")
    resp = await api.post("/v1/sessions", json={"participant_a": "+6591110001", "participant_b": "+6581110001",
                                               "purpose": "delivery_order", "webhook_url": url})
    body = await resp.json()

    assert resp.status == 422, body
    assert body["error"]["code"] == "invalid_field" and body["error"]["field"] == "webhook_url"
    assert message in body["error"]["message"] and "s3cret" not in json.dumps(body)


# -- the out-of-session question -------------------------------------------------------------
async def test_the_out_of_session_question_never_reaches_an_internal_service(store, dsn):
    rejection = Reject(RejectReason.NOT_A_PARTICIPANT)
    async with InternalService() as internal:
        settings = Settings(database_url=dsn, out_of_session_url=f"https://127.0.0.1:{internal.port}/ask")
        answer = await ask_business(store, settings, "+6560001001", "+6591110001", rejection)

    assert internal.connections == 0 and answer == rejection


async def test_the_out_of_session_question_follows_no_redirect_to_an_internal_service(store, dsn):
    rejection = Reject(RejectReason.NOT_A_PARTICIPANT)
    async with InternalService() as internal:
        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{internal.port}/ask")

        runner, url = await receiver(redirect)
        try:
            settings = Settings(database_url=dsn, out_of_session_url=url, development=True,
                                outbound_allow=ON_PREMISES)
            answer = await ask_business(store, settings, "+6560001001", "+6591110001", rejection)
        finally:
            await runner.cleanup()

    assert internal.connections == 0 and answer == rejection
