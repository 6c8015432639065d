"""A call's row in `calls`, and its webhook events, written as the call progresses.

Writes go through a queue drained by one task, in order (an event never
overtakes the row it reports), so call control never waits on the database;
a write the database refuses for a few seconds goes to the spool, to be
replayed when it is back. Row writes waiting together are coalesced: the
burst of changes a step makes (and whatever queued while the previous write
ran) goes in as one statement, and so does an update with the webhook event
that reports it, so a call holds a pooled connection as rarely as it can.
"""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

from bridge.calls.mailbox import Mailbox
from bridge.calls.spool import Spool, apply
from bridge.recordings import NotKept, StoredRecording
from bridge.store import Store
from bridge.store.errors import StoreUnavailable
from bridge.store.recordings import RecordingRow

RETRY_DELAYS = (0.2, 0.5, 1.0)  # then the write goes to the spool


class CallRow:
    def __init__(self, store: Store, call_id: uuid.UUID, log, resumed_fields: dict | None = None,
                 spool: Spool | None = None):
        """`resumed_fields`: the row as stored, for a call adopted after a restart."""
        self.store = store
        self.call_id = call_id
        self.log = log
        self.spool = spool
        self.spooled = False  # once a write is spooled, the later ones follow it there
        self._lost = False  # a write was lost since the last `kept` (keep_recording)
        self._queue: Mailbox[tuple[str, dict[str, Any]] | None] = Mailbox()
        self._task = asyncio.create_task(self._drain())
        self.fields: dict[str, Any] = dict(resumed_fields or {})  # the row as described so far

    def insert(self, **fields: Any) -> None:
        self.fields.update(fields)
        self._put(("insert", fields))

    def update(self, **fields: Any) -> None:
        self.fields.update(fields)
        self._put(("update", fields))

    def event(self, event_type: str, session_id: uuid.UUID, url: str | None, data: dict,
              event_id: uuid.UUID | None = None) -> None:
        """Queue a webhook event (after the row writes before it); `event_id`
        where a second writer of the same event must not make it two."""
        if url:
            self._put(("event", {"event_type": event_type, "session_id": session_id,
                                 "url": url, "data": data, "event_id": event_id or uuid.uuid4()}))

    def touch_session(self, session_id: uuid.UUID) -> None:
        self._put(("touch", {"session_id": session_id}))

    async def keep_recording(self, stored: StoredRecording) -> None:
        """Index a sealed recording with its wrapped key (so a spooled write
        carries the key wrapped, never in the clear), and return once that
        write, and every one before it, is in the database or the spool: the
        row is the only way to open the file, so Asterisk's copy goes only
        after (`recordings.Keep`)."""
        row = RecordingRow(id=stored.id, call_id=self.call_id, storage_path=str(stored.path),
                           format=stored.format, bytes=stored.bytes,
                           duration_seconds=round(stored.duration_seconds, 3), sha256=stored.sha256,
                           key_id=stored.key.key_id, wrapped_key=stored.key.blob)
        self._put(("recording", dict(vars(row))))  # its fields as they are: asdict() deep-copies each
        kept = asyncio.get_running_loop().create_future()
        self._put(("kept", {"future": kept}))
        # The writer ends only through close() or a failure: then it is not kept.
        await asyncio.wait((kept, self._task), return_when=asyncio.FIRST_COMPLETED)
        if not kept.done() or not kept.result():
            raise NotKept("a write before it, or the recording's row, was lost")

    async def close(self) -> None:
        """Wait until every write has been applied or spooled."""
        self._put(None)
        await self._task

    def _put(self, item: tuple[str, dict[str, Any]] | None) -> None:
        self._queue.put_nowait(item)

    async def _next(self) -> tuple[str, dict[str, Any]] | None:
        """The next write, with the row updates queued right behind it merged in,
        and an update with the event queued right behind it (one statement)."""
        item = await self._queue.get()
        if item is None or item[0] not in ("insert", "update"):
            return item
        operation, fields = item[0], dict(item[1])
        while self._next_is("update"):
            fields.update(self._queue.get_nowait()[1])
        if operation == "update" and self._next_is("event"):
            return "update_event", {"update": fields, "event": self._queue.get_nowait()[1]}
        return operation, fields

    def _next_is(self, operation: str) -> bool:
        return not self._queue.empty() and self._queue.peek() is not None and self._queue.peek()[0] == operation

    async def _drain(self) -> None:
        while (item := await self._next()) is not None:
            operation, fields = item
            if operation == "kept":  # what was queued before is written or spooled, or some was lost
                if not fields["future"].done():
                    fields["future"].set_result(not self._lost)
                self._lost = False
                continue
            if not self.spooled and await self._write(operation, fields):
                continue
            self.spooled = True  # later writes follow this one, in order
            if self.spool is None:
                self._lost = True
                self.log.error("call.row_write_lost", operation=operation,
                               fields=sorted(fields["update"] if operation == "update_event" else fields))
                continue
            try:
                await asyncio.to_thread(self.spool.append, self.call_id, operation, fields)
            except (OSError, TypeError, ValueError) as exc:  # the disk, or a value JSON cannot hold
                self._lost = True
                self.log.error("call.row_write_lost", operation=operation, error=type(exc).__name__)
                continue
            self.log.warning("call.row_spooled", operation=operation)

    async def _write(self, operation: str, fields: dict[str, Any]) -> bool:
        """True once the database has it; False when it must go to the spool."""
        for delay in (0.0, *RETRY_DELAYS):
            if delay:
                await asyncio.sleep(delay)
            try:
                await apply(self.store, self.call_id, operation, fields)
                return True
            except StoreUnavailable:
                continue
            except Exception as exc:  # refused for another reason: keep it, inspectable, in the spool
                self.log.error("call.row_write_failed", operation=operation, error=type(exc).__name__)
                return False
        return False
