"""Wait audio's SQL (`wait_audio`): the uploaded sounds a session may play while
the counterpart rings (the files themselves: bridge/recordings/wait_audio.py).
Each belongs to the account that uploaded it: a key lists, deletes and names
in a session only its own (`account_id`; None: the operator, every one)."""
from __future__ import annotations

import uuid

from bridge.store.apikeys import DEFAULT_ACCOUNT_ID
from bridge.store.db import Database
from bridge.store.errors import NotFound


class WaitAudio:
    """`store.wait_audio`."""

    def __init__(self, db: Database):
        self.db = db

    async def add(self, audio_id: uuid.UUID, name: str, storage_path: str, size: int,
                  duration_seconds: float, sha256: str, account_id: uuid.UUID | None = None) -> dict:
        row = await self.db.run(lambda conn: conn.fetchrow(
            "INSERT INTO wait_audio (id, name, storage_path, bytes, duration_seconds, sha256, account_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
            audio_id, name, storage_path, size, duration_seconds, sha256, account_id or DEFAULT_ACCOUNT_ID))
        return dict(row)

    async def list(self, account_id: uuid.UUID | None = None) -> list[dict]:
        return [dict(r) for r in await self.db.run(lambda conn: conn.fetch(
            "SELECT * FROM wait_audio WHERE $1::uuid IS NULL OR account_id = $1 ORDER BY created_at", account_id))]

    async def delete(self, audio_id: uuid.UUID, account_id: uuid.UUID | None = None) -> dict:
        row = await self.db.run(lambda conn: conn.fetchrow(
            "DELETE FROM wait_audio WHERE id = $1 AND ($2::uuid IS NULL OR account_id = $2) RETURNING *",
            audio_id, account_id))
        if row is None:
            raise NotFound("no such wait audio")
        return dict(row)
