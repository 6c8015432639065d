"""/metrics as Prometheus reads it: prometheus-client's own parser, correct
types and names, the process's metrics, and every series docs/operations.md
documents, with the values an operator would alert on."""
from __future__ import annotations

import re
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from bridge.agi import FallbackAgi
from bridge.ami import AsteriskMonitor
from bridge.api.app import make_app
from bridge.ari import AriClient
from bridge.calls.spool import Spool
from bridge.config import Settings
from bridge.store.errors import StoreUnavailable
from tests.integration.conftest import new_parties, wait_for_call_row

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def families(text: str) -> dict[str, object]:
    """Metric families by name, as a Prometheus server would parse them."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(parsed: dict, family: str, name: str | None = None, **labels: str) -> float | None:
    for s in parsed[family].samples:
        if s.name == (name or family) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def documented_series() -> list[tuple[str, str]]:
    """(name, type) of every metric in docs/operations.md's table."""
    rows = re.findall(r"^\| `(masking_[a-z_]+)`(?:\{[^}]*\})? \| (counter|gauge|histogram) \|",
                      OPERATIONS.read_text(), re.M)
    assert rows, "docs/operations.md lists no metrics"
    return rows


@pytest.fixture
async def app_client(store, dsn):
    client = TestClient(TestServer(make_app(store, Settings(database_url=dsn))))
    await client.start_server()
    yield client
    await client.close()


async def scrape(client) -> dict:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")  # the text format
    return families(await response.text())


async def test_metrics_parse_with_prometheus_client_and_carry_every_documented_series(app_client):
    parsed = await scrape(app_client)

    for name, kind in documented_series():
        family = name.removesuffix("_total") if kind == "counter" else name
        assert family in parsed, f"{name} is documented but not exported"
        assert parsed[family].type == kind, f"{name} is a {parsed[family].type}, documented as a {kind}"
    # The process's own metrics come with prometheus-client.
    assert parsed["process_cpu_seconds"].type == "counter"
    assert sample(parsed, "process_resident_memory_bytes") > 0
    assert sample(parsed, "process_open_fds") > 0
    # Counters end in _total, durations in _seconds; nothing untyped.
    for family in parsed.values():
        assert family.type != "unknown", family.name
        for s in family.samples:
            if family.type == "counter" and not s.name.endswith("_created"):
                assert s.name.endswith("_total"), s.name
    assert "masking_asterisk_reloads" not in parsed or parsed["masking_asterisk_reloads"].type == "counter"
    assert not any(name.startswith("masking_webhook_") for name in parsed), "one prefix: masking_webhooks_"
    assert sample(parsed, "masking_database_up") == 1


async def test_the_webhook_backlog_and_dead_letters_are_gauges(app_client, store):
    for n in range(3):
        await store.outbox.enqueue("call.ended", None, "http://127.0.0.1:9/hook", {"n": n})
    [oldest, *_] = sorted(await store.outbox.list(), key=lambda e: e["id"])
    await store.outbox.failed(oldest["id"], "HTTP 500", None)  # dead-lettered

    parsed = await scrape(app_client)

    assert sample(parsed, "masking_webhooks_pending") == 2
    assert sample(parsed, "masking_webhooks_dead") == 1


async def test_a_database_that_does_not_answer_reads_as_database_down_and_metrics_still_answer(
        app_client, store, monkeypatch):
    async def unreachable():
        raise StoreUnavailable("database unavailable: test")

    monkeypatch.setattr(store.numbers, "pool_counts", unreachable)
    parsed = await scrape(app_client)
    assert sample(parsed, "masking_database_up") == 0


async def test_asterisk_reloads_count_up_as_a_counter(app_client):
    before = sample(await scrape(app_client), "masking_asterisk_reloads", "masking_asterisk_reloads_total")
    monitor = AsteriskMonitor(Settings())
    monitor._reloaded(None, {"Module": "res_pjsip.so", "Status": "Success"})
    monitor._reloaded(None, {"Module": "app_dial.so", "Status": "Success"})
    after = sample(await scrape(app_client), "masking_asterisk_reloads", "masking_asterisk_reloads_total")
    assert after == before + 2


async def test_spooled_writes_show_as_spool_depth_until_replayed(app_client, store, tmp_path):
    spool = Spool(tmp_path / "spool" / "calls.jsonl")
    call_id = uuid.uuid4()
    spool.append(call_id, "event", {"event_type": "call.ended", "session_id": None,
                                    "url": "http://127.0.0.1:9/hook", "data": {}})
    spool.append(call_id, "event", {"event_type": "call.ended", "session_id": None,
                                    "url": "http://127.0.0.1:9/hook", "data": {"n": 2}})
    assert sample(await scrape(app_client), "masking_spool_depth") == 2

    await spool.replay(store)
    assert sample(await scrape(app_client), "masking_spool_depth") == 0


class AgiRequest:
    """What panoramisk hands a FastAGI handler: headers, and a command channel."""

    def __init__(self, virtual_number: str, caller: str):
        self.headers = {"agi_extension": virtual_number, "agi_callerid": caller, "agi_uniqueid": "1.1"}
        self.commands: list[str] = []

    async def send_command(self, command: str) -> dict:
        self.commands.append(command)
        return {"result": ("1", "")}


async def test_fastagi_calls_are_counted_by_outcome(app_client, store, dsn, tmp_path):
    settings = Settings(database_url=dsn, state_dir=tmp_path)
    before = sample(await scrape(app_client), "masking_agi_calls", "masking_agi_calls_total",
                    outcome="unknown_number") or 0
    agi = FallbackAgi(store, AriClient(settings.ari_url, "u", "p", "a"), settings, "node", None)
    try:
        await agi.route(AgiRequest("+6569990001", "+6591230001"))
    finally:
        await agi.ari.close()
    after = sample(await scrape(app_client), "masking_agi_calls", "masking_agi_calls_total",
                   outcome="unknown_number")
    assert after == before + 1
    assert not any("6591230001" in s.labels.get("outcome", "") for s in
                   (await scrape(app_client))["masking_agi_calls"].samples)


def test_the_running_service_reports_ari_asterisk_calls_and_no_drain(stack, place_call):
    parties = new_parties(stack)
    call = place_call(parties.a, parties.virtual_number, uas="uas_answer.xml", talk_ms=1000)
    assert call.counterpart.succeeded
    wait_for_call_row(stack, parties.virtual_number)

    def scraped() -> tuple[str, dict]:
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.settings.http_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return text, families(text)

    # The row says how the call ended before the call's task has released
    # everything and counted it: wait for the count.
    deadline = time.monotonic() + 10
    text, parsed = scraped()
    while not sample(parsed, "masking_calls", "masking_calls_total", disposition="answered") \
            and time.monotonic() < deadline:
        time.sleep(0.1)
        text, parsed = scraped()
    assert sample(parsed, "masking_ari_connected") == 1
    assert sample(parsed, "masking_asterisk_fully_booted") == 1
    assert sample(parsed, "masking_draining") == 0
    assert sample(parsed, "masking_database_up") == 1
    assert sample(parsed, "masking_spool_depth") == 0
    assert (sample(parsed, "masking_calls", "masking_calls_total", disposition="answered") or 0) >= 1
    assert sample(parsed, "masking_call_setup_seconds", "masking_call_setup_seconds_count") >= 1
    assert sample(parsed, "masking_event_loop_lag_seconds", "masking_event_loop_lag_seconds_count") >= 1
    assert parties.a.lstrip("+") not in text and parties.b.lstrip("+") not in text
