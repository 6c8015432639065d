"""Call-row writes that could not reach PostgreSQL, kept on disk until they can.

One JSON line per write, appended and fsynced, in the order the call made
them; the service replays the file when the database answers again. Replay is
idempotent: an insert that had in fact landed is skipped, updates re-apply the
same values, events are delivered at least once (receivers drop duplicates by
event id).
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from bridge import metrics
from bridge.files import open_private, write_private
from bridge.logs import get_logger
from bridge.store import Store
from bridge.store.errors import StoreUnavailable
from bridge.store.recordings import RecordingRow

log = get_logger("bridge.spool")
MAX_BYTES = 64 * 1024 * 1024


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, bytes):  # a wrapped recording key: the spool never sees a raw one
        return {"$b64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$dt"}:
            return datetime.fromisoformat(value["$dt"])
        if set(value) == {"$uuid"}:
            return uuid.UUID(value["$uuid"])
        if set(value) == {"$b64"}:
            return base64.b64decode(value["$b64"])
        return {k: _decode(v) for k, v in value.items()}
    return value


class SpoolFull(OSError):
    """The spool reached MAX_BYTES: the write is not kept."""


class Spool:
    def __init__(self, path: Path):
        self.path = path
        self._lock = asyncio.Lock()  # one replay at a time
        # Appends run in worker threads: none may land between a replay's last
        # read of the file and its replacement.
        self._file = threading.Lock()
        metrics.spool_depth.set(len(self))  # what a previous process left

    def __len__(self) -> int:
        try:
            with open(self.path, "rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def call_ids(self) -> set[uuid.UUID]:
        """The calls with writes still waiting here."""
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return set()
        ids = set()
        for line in lines:
            try:
                ids.add(uuid.UUID(json.loads(line)["call_id"]))
            except (ValueError, KeyError, TypeError):
                pass  # a torn line: the replay reports it
        return ids

    def append(self, call_id: uuid.UUID, operation: str, fields: dict[str, Any]) -> None:
        """Keep one write, on disk when this returns. SpoolFull (logged) or
        another OSError when it cannot be kept: the caller says what is lost."""
        line = json.dumps({"call_id": str(call_id), "op": operation, "fields": _encode(fields)}) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._file:
            if self.path.exists() and self.path.stat().st_size + len(line) > MAX_BYTES:
                log.error("spool.full", call_id=str(call_id), operation=operation)
                raise SpoolFull(f"the spool holds {MAX_BYTES} bytes")
            with open_private(self.path, "a") as f:  # the rows' personal details
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        metrics.spool_depth.inc()

    async def replay(self, store: Store) -> int:
        """Apply spooled writes in order until done or the database fails again."""
        async with self._lock:
            try:
                lines = self.path.read_text().splitlines()
            except FileNotFoundError:
                return 0
            done = 0
            for line in lines:
                try:
                    entry = json.loads(line)
                    await apply(store, uuid.UUID(entry["call_id"]), entry["op"], _decode(entry["fields"]))
                except StoreUnavailable:
                    break
                except (ValueError, KeyError, TypeError, asyncpg.PostgresError) as exc:
                    # A torn line (crash mid-append) or a write the database refuses for good.
                    log.error("spool.unusable_write", error=type(exc).__name__)
                done += 1
            # Writes appended while we replayed stay: none is appended between
            # this read and the replace (appends take the same lock).
            with self._file:
                try:
                    appended = self.path.read_text().splitlines()[len(lines):]
                except FileNotFoundError:
                    appended = []
                rest = lines[done:] + appended
                if rest:
                    write_private(self.path, "".join(r + "\n" for r in rest))
                else:
                    self.path.unlink(missing_ok=True)
            metrics.spool_depth.set(len(rest))
            if done:
                log.info("spool.replayed", writes=done, remaining=len(rest))
            return done


async def apply(store: Store, call_id: uuid.UUID, operation: str, fields: dict[str, Any]) -> None:
    """One call-row write; shared by the live writer and the replay."""
    if operation == "insert":
        try:
            await store.calls.insert(call_id, **fields)
        except asyncpg.UniqueViolationError:
            pass  # it had landed before the connection failed
    elif operation == "update":
        await store.calls.update(call_id, **fields)
    elif operation == "event":
        await store.outbox.enqueue(**fields)
    elif operation == "update_event":  # an update and the event reporting it (CallRow._next)
        try:
            await store.calls.update_and_enqueue(call_id, fields["update"], fields["event"])
        except (asyncpg.PostgresError, ValueError, TypeError):
            # The update refused: the event still goes (the business hears how
            # the call went); the refusal is raised, the pair kept in the spool.
            await store.outbox.enqueue(**fields["event"])
            raise
        store.outbox.told()
    elif operation == "touch":
        await store.sessions.touch(**fields)
    elif operation == "recording":
        try:
            await store.recordings.insert(RecordingRow(**fields))
        except asyncpg.UniqueViolationError:
            pass
    else:
        raise ValueError(f"unknown spooled operation {operation!r}")


async def replay_forever(spool: Spool, store: Store, interval: float = 2.0) -> None:
    """Writes kept while the database was down go in as soon as it is back."""
    while True:
        if spool.path.exists():
            try:
                await spool.replay(store)
            except Exception as exc:  # keep replaying: the next round may succeed
                log.error("spool.replay_failed", error=type(exc).__name__)
        await asyncio.sleep(interval)
