"""The per-call row writer: row changes made together reach the database as
one write, in order with the events that report them."""
from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from types import SimpleNamespace

from bridge.calls.record import CallRow
from bridge.calls.spool import Spool
from bridge.logs import get_logger
from bridge.store.errors import StoreUnavailable

SESSION = uuid.uuid4()


class FakeStore:
    """Records each statement the writer sends; `gate` holds writes until set,
    `down` refuses them as an unreachable database would."""

    def __init__(self):
        self.writes: list[tuple[str, dict]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.down = False
        self.calls = SimpleNamespace(insert=self._writer("insert"), update=self._writer("update"),
                                     update_and_enqueue=self._writer("update_event"))
        self.outbox = SimpleNamespace(enqueue=self._writer("event"), told=lambda: self.told.append(True))
        self.told: list[bool] = []
        self.sessions = SimpleNamespace(touch=self._writer("touch"))
        self.recordings = SimpleNamespace(insert=self._writer("recording"))

    def _writer(self, operation):
        async def write(*args, **fields):
            await self.gate.wait()
            if self.down:
                raise StoreUnavailable("database unavailable: TimeoutError")
            if operation == "update_event":  # (call_id, the update, the event)
                fields = {"update": args[1], "event": args[2]}
            if operation == "recording":  # (RecordingRow,)
                fields = {"id": args[0].id}
            self.writes.append((operation, fields))
        return write


def new_row(store, spool=None) -> CallRow:
    return CallRow(store, uuid.uuid4(), get_logger("test"), spool=spool)


async def test_a_burst_of_row_changes_is_one_write_and_an_event_stays_behind_the_row_it_reports():
    store = FakeStore()
    row = new_row(store)
    row.insert(virtual_number="+6561000001", caller_channel_id="c1", started_at=None)
    row.update(session_id=SESSION)
    row.update(callee_channel_id="c2", setup_ms=40)
    row.event("call.ringing", SESSION, "https://example.test/hook", {})
    row.update(ringing_at="t1")
    row.update(answered_at="t2", dial_status="ANSWER")
    await row.close()

    assert [op for op, _ in store.writes] == ["insert", "event", "update"]
    assert store.writes[0][1] == {"virtual_number": "+6561000001", "caller_channel_id": "c1", "started_at": None,
                                  "session_id": SESSION, "callee_channel_id": "c2", "setup_ms": 40}
    assert store.writes[2][1] == {"ringing_at": "t1", "answered_at": "t2", "dial_status": "ANSWER"}


async def test_changes_made_while_a_write_is_in_flight_go_in_together_after_it():
    store = FakeStore()
    store.gate.clear()
    row = new_row(store)
    row.insert(virtual_number="+6561000001", caller_channel_id="c1", started_at=None)
    await asyncio.sleep(0)  # the insert is sent and waits on the database
    row.update(ringing_at="t1")
    row.update(ringing_at="t2", notices="[]")
    row.update(disposition="answered")
    store.gate.set()
    await row.close()

    assert store.writes[1:] == [("update", {"ringing_at": "t2", "notices": "[]", "disposition": "answered"})]
    assert len(store.writes) == 2


async def test_a_coalesced_write_the_database_refuses_is_spooled_once_with_every_change(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("bridge.calls.record.RETRY_DELAYS", (0.0,))
    store = FakeStore()
    store.down = True
    spool = Spool(tmp_path / "calls.jsonl")
    row = new_row(store, spool)
    row.update(ringing_at="t1")
    row.update(disposition="failed")
    await row.close()

    assert store.writes == []
    assert len(spool) == 1
    assert '"ringing_at": "t1"' in spool.path.read_text() and '"disposition": "failed"' in spool.path.read_text()


async def test_an_update_and_the_event_reporting_it_are_one_write_in_their_order():
    store = FakeStore()
    row = new_row(store)
    row.insert(virtual_number="+6561000001", caller_channel_id="c1", started_at=None)
    await asyncio.sleep(0)
    row.update(ringing_at="t1")
    row.update(setup_ms=40)
    row.event("call.ringing", SESSION, "https://example.test/hook", {"n": 1})
    row.update(answered_at="t2")
    row.event("call.answered", SESSION, "https://example.test/hook", {"n": 2})
    row.event("call.extra", SESSION, "https://example.test/hook", {"n": 3})  # no update before it: alone
    await row.close()

    assert [op for op, _ in store.writes] == ["insert", "update_event", "update_event", "event"]
    assert store.writes[1][1]["update"] == {"ringing_at": "t1", "setup_ms": 40}
    assert store.writes[1][1]["event"]["event_type"] == "call.ringing"
    assert store.writes[2][1]["update"] == {"answered_at": "t2"}
    assert store.writes[2][1]["event"]["data"] == {"n": 2}
    assert len(store.told) == 2  # each woke this process's webhook sender


async def test_an_update_and_its_event_the_database_refuses_are_spooled_as_one(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("bridge.calls.record.RETRY_DELAYS", (0.0,))
    store = FakeStore()
    store.down = True
    spool = Spool(tmp_path / "calls.jsonl")
    row = new_row(store, spool)
    row.update(ringing_at="t1")
    row.event("call.ringing", SESSION, "https://example.test/hook", {})
    await row.close()

    assert store.writes == [] and len(spool) == 1
    assert '"op": "update_event"' in spool.path.read_text()


def sealed(recording_id: uuid.UUID):
    from bridge.privacy.crypto import Sealed
    from bridge.recordings import StoredRecording
    return StoredRecording(Path("/store/x.wav.sealed"), "wav", 44, 0.0, "0" * 64, recording_id,
                           Sealed(key_id="k1", blob=b"wrapped"))


async def test_a_recording_is_kept_only_once_it_and_the_writes_before_it_are_in_the_database():
    store = FakeStore()
    store.gate.clear()
    row = new_row(store)
    row.update(disposition="answered")
    recording_id = uuid.uuid4()
    keeping = asyncio.create_task(row.keep_recording(sealed(recording_id)))
    await asyncio.sleep(0.05)
    assert not keeping.done()  # the database has not answered: Asterisk's copy must stay
    store.gate.set()
    await keeping
    assert store.writes == [("update", {"disposition": "answered"}), ("recording", {"id": recording_id})]
    await row.close()


async def test_a_recording_the_database_cannot_take_is_kept_once_it_is_in_the_spool(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("bridge.calls.record.RETRY_DELAYS", (0.0,))
    store = FakeStore()
    store.down = True
    spool = Spool(tmp_path / "calls.jsonl")
    row = new_row(store, spool)
    await row.keep_recording(sealed(uuid.uuid4()))
    assert [json.loads(line)["op"] for line in spool.path.read_text().splitlines()] == ["recording"]
    await row.close()


def test_the_spool_names_the_calls_whose_writes_wait_there_and_survives_a_torn_line(tmp_path: Path):
    spool = Spool(tmp_path / "calls.jsonl")
    assert spool.call_ids() == set()
    first, second = uuid.uuid4(), uuid.uuid4()
    spool.append(first, "update", {"disposition": "answered"})
    spool.append(second, "touch", {"session_id": SESSION})
    with open(spool.path, "a") as f:
        f.write('{"call_id": "')  # a crash mid-append
    assert spool.call_ids() == {first, second}


async def test_a_recording_whose_row_cannot_be_kept_says_so(tmp_path: Path, monkeypatch):
    """The database away and the spool full (or none): Asterisk's copy must
    stay, so keeping raises instead of returning (found by a review: a full
    spool logged and returned, and the only wrapped key was gone)."""
    from bridge.recordings import NotKept
    monkeypatch.setattr("bridge.calls.record.RETRY_DELAYS", (0.0,))
    monkeypatch.setattr("bridge.calls.spool.MAX_BYTES", 10)
    store = FakeStore()
    store.down = True
    for spool in (Spool(tmp_path / "calls.jsonl"), None):
        row = new_row(store, spool)
        row.update(disposition="answered")
        try:
            await row.keep_recording(sealed(uuid.uuid4()))
        except NotKept:
            pass
        else:
            raise AssertionError("kept with nowhere to keep it")
        await row.close()
    row = new_row(store, Spool(tmp_path / "other.jsonl"))
    monkeypatch.setattr("bridge.calls.spool.MAX_BYTES", 1 << 20)
    await row.keep_recording(sealed(uuid.uuid4()))  # what is lost before one keep does not fail the next
    await row.close()
