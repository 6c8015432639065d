"""Wait audio's SQL (`wait_audio`): the uploaded sounds a session may play while
the counterpart rings (the files themselves: bridge/recordings/wait_audio.py)."""
from __future__ import annotations

import uuid

from bridge.store.db import Database
from bridge.store.errors import NotFound


class WaitAudio:
    """`store.wait_audio`."""

    def __init__(self, db: Database):
        self.db = db

    async def add(self, audio_id: uuid.UUID, name: str, storage_path: str, size: int,
                  duration_seconds: float, sha256: str) -> dict:
        row = await self.db.run(lambda conn: conn.fetchrow(
            "INSERT INTO wait_audio (id, name, storage_path, bytes, duration_seconds, sha256)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
            audio_id, name, storage_path, size, duration_seconds, sha256))
        return dict(row)

    async def list(self) -> list[dict]:
        return [dict(r) for r in await self.db.run(lambda conn: conn.fetch(
            "SELECT * FROM wait_audio ORDER BY created_at"))]

    async def delete(self, audio_id: uuid.UUID) -> dict:
        row = await self.db.run(lambda conn: conn.fetchrow(
            "DELETE FROM wait_audio WHERE id = $1 RETURNING *", audio_id))
        if row is None:
            raise NotFound("no such wait audio")
        return dict(row)
