"""Abuse of the API by a key holder: a flood of requests gets 429 with
Retry-After, per key; a crafted wait-audio upload is refused quickly, and a
conversion that runs too long is stopped."""
from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bench.crafted_wav import crafted_wav
from bridge.api.app import make_app
from bridge.config import Settings
from tests.unit.test_convert import wav


@pytest.fixture
async def serve(store, dsn, tmp_path):
    clients = []

    async def serve(**settings) -> tuple[TestClient, dict]:
        app = make_app(store, Settings(database_url=dsn, recording_dir=tmp_path / "recordings",
                                       asterisk_sounds_dir=tmp_path / "sounds", **settings))
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        token, _ = await store.api_keys.create("shop", ["sessions", "numbers"])
        return client, {"Authorization": f"Bearer {token}"}

    yield serve
    for client in clients:
        await client.close()


async def test_a_key_flooding_the_api_gets_429_with_retry_after_and_other_keys_do_not(serve, store):
    client, flooder = await serve(api_rate=0.5, api_burst=3)
    token, _ = await store.api_keys.create("other", ["sessions"])

    answers = [await client.get("/v1/sessions", headers=flooder) for _ in range(5)]
    other = await client.get("/v1/sessions", headers={"Authorization": f"Bearer {token}"})

    assert [a.status for a in answers] == [200, 200, 200, 429, 429]
    limited = answers[3]
    assert 1 <= int(limited.headers["Retry-After"]) <= 2
    body = await limited.json()
    assert body["error"]["code"] == "rate_limited" and body["error"]["retry_after_seconds"] >= 1
    assert other.status == 200, "the limit is per key"


async def test_requests_without_a_valid_key_never_spend_a_keys_budget(serve):
    client, key = await serve(api_rate=0.5, api_burst=2)
    for _ in range(5):
        assert (await client.get("/v1/sessions", headers={"Authorization": "Bearer mk_nope_nope"})).status == 401

    assert [(await client.get("/v1/sessions", headers=key)).status for _ in range(2)] == [200, 200]


async def test_a_crafted_wav_claiming_a_4ghz_sample_rate_is_refused_as_unsupported_audio(serve):
    client, key = await serve()

    resp = await client.post("/v1/wait-audio", data=crafted_wav(80), headers={**key, "Content-Type": "audio/wav"})

    assert resp.status == 422
    body = await resp.json()
    assert body["error"]["code"] == "unsupported_audio" and "sample rate" in body["error"]["message"]


async def test_a_wait_audio_conversion_past_its_time_bound_is_stopped_and_refused(serve):
    client, key = await serve(wait_audio_convert_seconds=0.05)
    upload = wav(96000, 2, 16, 10)  # valid, and seconds of work

    resp = await asyncio.wait_for(
        client.post("/v1/wait-audio", data=upload, headers={**key, "Content-Type": "audio/wav"}), 60)

    assert resp.status == 422
    body = await resp.json()
    assert body["error"]["code"] == "unsupported_audio" and "within" in body["error"]["message"]
    assert (await (await client.get("/v1/wait-audio", headers=key)).json()) == {"wait_audio": []}
