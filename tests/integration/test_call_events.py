"""A call-row update and the webhook event that reports it go in as one
statement (bridge/calls/record.py, `Calls.update_and_enqueue`), live or
replayed from the spool; a replay adds neither twice, and an update the
database refuses does not take its event with it."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import asyncpg
import pytest

from bridge.calls.spool import Spool, apply
from bridge.clock import utcnow
from bridge.store import Store


async def new_call(store: Store) -> uuid.UUID:
    call_id = uuid.uuid4()
    await store.calls.insert(call_id, "+6561000001", f"chan-{call_id.hex[:8]}", utcnow())
    return call_id


def answered(call_id: uuid.UUID) -> dict:
    return {"event_type": "call.answered", "session_id": None, "url": "https://hooks.example/x",
            "data": {"call_id": str(call_id)}, "event_id": uuid.uuid4()}


async def test_a_spooled_update_and_its_event_replay_together_and_only_once(store, tmp_path: Path):
    call_id = await new_call(store)
    event = answered(call_id)
    spool = Spool(tmp_path / "calls.jsonl")
    write = {"update": {"answered_at": utcnow(), "dial_status": "ANSWER"}, "event": event}
    spool.append(call_id, "update_event", write)
    spool.append(call_id, "update_event", write)  # a crash between applying and trimming the spool
    assert await spool.replay(store) == 2

    row = await store.calls.get(call_id)
    assert row["dial_status"] == "ANSWER" and row["answered_at"] == write["update"]["answered_at"]
    events = await store.pool.fetch("SELECT event_id, event_type, session_id, url, payload FROM webhook_outbox")
    assert [(e["event_id"], e["event_type"], e["url"]) for e in events] == \
        [(event["event_id"], "call.answered", "https://hooks.example/x")]
    payload = json.loads(events[0]["payload"])
    assert payload["id"] == str(event["event_id"]) and payload["type"] == "call.answered"
    assert payload["data"] == {"call_id": str(call_id)}


async def test_an_update_the_database_refuses_still_sends_its_event_and_is_kept(store):
    """The pair is one statement, so a refused update takes the event down with
    it; the event is then written alone (the business still hears how the call
    went), and the refusal raised, so the writer keeps the pair in the spool."""
    call_id = await new_call(store)
    event = answered(call_id)
    for _ in range(2):  # live, then replayed from the spool: still one event
        with pytest.raises(asyncpg.CheckViolationError):
            await apply(store, call_id, "update_event", {"update": {"disposition": "no-such-disposition"},
                                                         "event": event})
    assert await store.pool.fetchval("SELECT array_agg(event_id) FROM webhook_outbox") == [event["event_id"]]
    assert (await store.calls.get(call_id))["disposition"] == "in_progress"
