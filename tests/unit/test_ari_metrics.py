"""What the ARI client counts: every REST request by operation and outcome,
with labels that name the operation and never an object's id."""
from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from bridge.ari.client import AriClient, AriNotFound, operation_of


@pytest.mark.parametrize("method, path, label", [
    ("POST", "/channels/1733450000.12/play", "POST /channels/{id}/play"),
    ("POST", "/channels/masking-2f1c-callee/snoop", "POST /channels/{id}/snoop"),
    ("POST", "/channels/create", "POST /channels/create"),
    ("DELETE", "/channels/1733450000.12", "DELETE /channels/{id}"),
    ("POST", "/bridges/b-9/addChannel", "POST /bridges/{id}/addChannel"),
    ("GET", "/recordings/stored/c-9f3e-caller/file", "GET /recordings/stored/{id}/file"),
    ("POST", "/recordings/live/c-9f3e/stop", "POST /recordings/live/{id}/stop"),
    ("PUT", "/applications/masking/eventFilter", "PUT /applications/{id}/eventFilter"),
    ("GET", "/asterisk/info", "GET /asterisk/info"),
    ("GET", "/channels", "GET /channels"),
    ("DELETE", "/playbacks/p-1", "DELETE /playbacks/{id}"),
])
def test_an_operation_label_is_the_path_template(method, path, label):
    assert operation_of(method, path) == label


def test_a_path_outside_the_known_shapes_is_labelled_other_not_passed_through():
    # an id in a place the template does not know (a future endpoint) must not become a label
    assert operation_of("GET", "/endpoints/PJSIP/6591234567") == "GET other"
    assert operation_of("GET", "/channels/1733.1/+6591234567") == "GET other"


def sample(operation: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("masking_ari_requests_total",
                                     {"operation": operation, "outcome": outcome}) or 0.0


def test_each_request_is_counted_with_its_outcome():
    async def scenario():
        async def answered(request):
            return web.Response(status=204)

        async def gone(request):
            return web.json_response({"message": "Channel not found"}, status=404)

        app = web.Application()
        app.router.add_post("/ari/channels/{id}/answer", answered)
        app.router.add_post("/ari/channels/{id}/ring", gone)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        before = sample("POST /channels/{id}/answer", "ok"), sample("POST /channels/{id}/ring", "not_found")
        try:
            async with AriClient(f"http://127.0.0.1:{port}", "u", "p", "masking") as ari:
                await ari.answer("1733.1")
                await ari.answer("1733.2")
                with pytest.raises(AriNotFound):
                    await ari.ring("1733.3")
        finally:
            await runner.cleanup()
        after = sample("POST /channels/{id}/answer", "ok"), sample("POST /channels/{id}/ring", "not_found")
        assert (after[0] - before[0], after[1] - before[1]) == (2, 1)

    asyncio.run(scenario())


def test_a_request_asterisk_never_answered_is_counted_unreachable():
    import socket

    from bridge.ari.client import AriUnreachable

    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def scenario():
        async with AriClient(f"http://127.0.0.1:{port}", "u", "p", "masking") as ari:
            with pytest.raises(AriUnreachable):
                await ari.hangup("1733.4")

    before = sample("DELETE /channels/{id}", "unreachable")
    asyncio.run(scenario())
    assert sample("DELETE /channels/{id}", "unreachable") - before == 1
