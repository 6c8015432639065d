"""A call's row in `calls`, and its webhook events, written as the call progresses.

Writes go through a queue drained by one task, in order (an event never
overtakes the row it reports), so call control never waits on the database;
a failed write is retried briefly and then logged loudly.
"""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

from bridge.store import Store, StoreUnavailable

RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0)


class CallRow:
    def __init__(self, store: Store, call_id: uuid.UUID, log, resumed_fields: dict | None = None):
        """`resumed_fields`: the row as stored, for a call adopted after a restart."""
        self.store = store
        self.call_id = call_id
        self.log = log
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._drain())
        self.inserted = resumed_fields is not None
        self.lost_writes = 0
        self.fields: dict[str, Any] = dict(resumed_fields or {})  # the row as described so far

    def insert(self, **fields: Any) -> None:
        self.fields.update(fields)
        self._queue.put_nowait(("insert", fields))

    def update(self, **fields: Any) -> None:
        self.fields.update(fields)
        self._queue.put_nowait(("update", fields))

    def event(self, event_type: str, session_id: uuid.UUID, url: str | None, data: dict) -> None:
        """Queue a webhook event (after the row writes before it)."""
        if url:
            self._queue.put_nowait(("event", {"event_type": event_type, "session_id": session_id,
                                              "url": url, "data": data}))

    def touch_session(self, session_id: uuid.UUID) -> None:
        self._queue.put_nowait(("touch", {"session_id": session_id}))

    async def close(self) -> None:
        """Wait until every write has been applied (or given up on)."""
        self._queue.put_nowait(None)
        await self._task

    async def _drain(self) -> None:
        while (item := await self._queue.get()) is not None:
            operation, fields = item
            if operation in ("update",) and not self.inserted:
                # The insert was lost; an update alone would match no row.
                self.lost_writes += 1
                self.log.error("call.row_write_lost", operation=operation, fields=sorted(fields))
                continue
            for attempt, delay in enumerate((0.0, *RETRY_DELAYS)):
                await asyncio.sleep(delay)
                try:
                    if operation == "insert":
                        await self.store.insert_call(self.call_id, **fields)
                        self.inserted = True
                    elif operation == "update":
                        await self.store.update_call(self.call_id, **fields)
                    elif operation == "event":
                        await self.store.enqueue_event(**fields)
                    else:
                        await self.store.touch_session(**fields)
                    break
                except StoreUnavailable:
                    if attempt == len(RETRY_DELAYS):
                        self.lost_writes += 1
                        self.log.error("call.row_write_lost", operation=operation, fields=sorted(fields))
