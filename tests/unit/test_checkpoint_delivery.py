"""Checkpoints leaving the host: appended to their file, sent to syslog, POSTed to a URL."""
from __future__ import annotations

import json
import os
import socket
import stat
from datetime import datetime, timezone

import pytest
from aiohttp import web

from bridge.auditing import CheckpointDeliveryFailed, append_checkpoint, load_checkpoints, post_checkpoint, send_syslog
from bridge.privacy.checkpoint import sign_checkpoint
from bridge.privacy.crypto import KeyRing

RING = KeyRing.generate()
CHECKPOINT = sign_checkpoint(RING, 42, b"\x05" * 32, datetime(2025, 3, 1, 9, 55, tzinfo=timezone.utc), "bridge-1")


def test_checkpoints_are_appended_to_a_file_only_its_owner_can_read(tmp_path):
    path = tmp_path / "state" / "audit" / "checkpoints.jsonl"
    old = os.umask(0)
    try:
        append_checkpoint(path, CHECKPOINT)
        append_checkpoint(path, CHECKPOINT)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_checkpoints(path, RING) == [CHECKPOINT, CHECKPOINT]
    assert load_checkpoints(tmp_path / "none.jsonl", RING) == []


def test_a_checkpoint_goes_to_syslog_over_udp_as_an_authpriv_notice():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", 0))
        collector.settimeout(5)
        send_syslog(f"127.0.0.1:{collector.getsockname()[1]}", CHECKPOINT)
        message = collector.recv(65536).decode()
    prefix = "<85>masking-audit: "
    assert message.startswith(prefix)
    assert json.loads(message[len(prefix):])["seq"] == 42


def test_a_checkpoint_goes_to_a_local_syslog_socket(tmp_path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as collector:
        collector.bind(str(tmp_path / "log"))
        collector.settimeout(5)
        send_syslog(str(tmp_path / "log"), CHECKPOINT)
        assert b'"seq": 42' in collector.recv(65536)


@pytest.fixture
async def receiver():
    """A checkpoint receiver on a free port: records what it got, answers as told."""
    got: list[dict] = []
    answer = {"status": 204}

    async def receive(request: web.Request) -> web.Response:
        got.append({"path": request.path, "body": await request.text(), "type": request.content_type})
        if answer["status"] in (301, 302, 307):
            raise web.HTTPFound("/elsewhere")
        return web.Response(status=answer["status"], text="internal detail: db password is hunter2")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/checkpoints", got, answer
    await runner.cleanup()


async def test_a_checkpoint_is_posted_as_json(receiver):
    url, got, _ = receiver
    await post_checkpoint(url, CHECKPOINT)
    assert got[0]["type"] == "application/json" and json.loads(got[0]["body"])["signature"]


@pytest.mark.parametrize("status", [302, 500])
async def test_a_receiver_that_redirects_or_fails_is_reported_without_its_words_and_never_followed(receiver, status):
    url, got, answer = receiver
    answer["status"] = status
    with pytest.raises(CheckpointDeliveryFailed) as failed:
        await post_checkpoint(url, CHECKPOINT)
    assert str(status) in str(failed.value) and "hunter2" not in str(failed.value)
    assert [g["path"] for g in got] == ["/checkpoints"]


async def test_an_unreachable_receiver_is_reported():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(CheckpointDeliveryFailed, match="unreachable"):
        await post_checkpoint(f"http://127.0.0.1:{port}/", CHECKPOINT)
