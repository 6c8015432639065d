"""Recordings' SQL (`recordings`, `recording_keys`): a recording's row and its
wrapped data key, stored together; shredding (deleting the key, so the audio
is unreadable wherever a copy is); re-wrapping keys after a master key
rotation; the rows still stored as plaintext. The files are the recordings
domain's (bridge/recordings/); nothing here touches a file.

A recording is its call's session's account's: `get` for an API key takes its
`account_id`, and another account's recording is NotFound."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from bridge.privacy.crypto import DecryptionFailed, Sealed, recording_key_context
from bridge.store.apikeys import owned_by
from bridge.store.db import Database
from bridge.store.errors import NotFound


@dataclass(frozen=True)
class RecordingRow:
    id: uuid.UUID
    call_id: uuid.UUID
    storage_path: str
    format: str
    bytes: int
    duration_seconds: float
    sha256: str
    # The recording's data key, wrapped by a master key (never the key itself);
    # None for a plaintext file (stored before sealing existed).
    key_id: str | None = None
    wrapped_key: bytes | None = None


async def insert_key_in(conn: asyncpg.Connection, recording_id: uuid.UUID, key: Sealed) -> None:
    await conn.execute("INSERT INTO recording_keys (recording_id, key_id, wrapped_key) VALUES ($1, $2, $3)",
                       recording_id, key.key_id, key.blob)


async def shred_in(conn: asyncpg.Connection, recording_id: uuid.UUID) -> datetime:
    """`Recordings.shred` in the caller's transaction."""
    async with conn.transaction():
        # The row lock first: a concurrent sealing commits its key before
        # this deletes it, or sees the row shredded and stores none.
        shredded_at = await conn.fetchval(
            "UPDATE recordings SET shredded_at = coalesce(shredded_at, now()) WHERE id = $1"
            " RETURNING shredded_at", recording_id)
        if shredded_at is None:
            raise NotFound("no such recording")
        await conn.execute("DELETE FROM recording_keys WHERE recording_id = $1", recording_id)
        return shredded_at


class Recordings:
    """`store.recordings`."""

    def __init__(self, db: Database):
        self.db = db

    async def insert(self, row: RecordingRow) -> None:
        """The recording and its wrapped key together, or neither: one
        statement (one round trip, not five, at the end of every recorded call).
        Collected after its session was erased (a process died between the
        hangup and the move), it is born shredded, its key never stored. The
        session is locked first: an erasure at this moment commits before this
        reads it, or waits and then finds this recording to shred."""
        await self.db.run(lambda conn: conn.execute(
            "WITH erased AS ("
            "  SELECT s.anonymised_at IS NOT NULL AS erased FROM calls c"
            "  JOIN masking_sessions s ON s.id = c.session_id WHERE c.id = $2 FOR SHARE OF s"
            "), inserted AS ("
            "  INSERT INTO recordings (id, call_id, storage_path, format, bytes, duration_seconds, sha256, sealed,"
            "   shredded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $9::bytea IS NOT NULL,"
            "   CASE WHEN coalesce((SELECT erased FROM erased), false) THEN now() END)"
            "  RETURNING id, shredded_at"
            ") INSERT INTO recording_keys (recording_id, key_id, wrapped_key)"
            " SELECT id, $8, $9 FROM inserted WHERE shredded_at IS NULL AND $9::bytea IS NOT NULL",
            row.id, row.call_id, row.storage_path, row.format, row.bytes, row.duration_seconds, row.sha256,
            row.key_id, row.wrapped_key))

    async def get(self, recording_id: uuid.UUID, account_id: uuid.UUID | None = None) -> dict:
        row = await self.db.run(lambda conn: conn.fetchrow(
            "SELECT r.*, c.session_id, s.purpose FROM recordings r JOIN calls c ON c.id = r.call_id"
            " LEFT JOIN masking_sessions s ON s.id = c.session_id"
            f" WHERE r.id = $1 AND {owned_by('$2', 'c.session_id', 's.account_id')}",
            recording_id, account_id))
        if row is None:
            raise NotFound("no such recording")
        return dict(row)

    async def key(self, recording_id: uuid.UUID) -> Sealed | None:
        """The recording's wrapped data key; None once shredded (or never sealed)."""
        row = await self.db.run(lambda conn: conn.fetchrow(
            "SELECT key_id, wrapped_key FROM recording_keys WHERE recording_id = $1", recording_id))
        return Sealed(row["key_id"], row["wrapped_key"]) if row else None

    async def shred(self, recording_id: uuid.UUID, conn: asyncpg.Connection | None = None) -> datetime:
        """Delete the recording's wrapped key: its audio is unreadable wherever a
        copy of the file is. Idempotent; returns when it was first shredded.

        `conn`: run in the caller's transaction (erasure, retention purge). A
        recording stored before sealing has no key: the sealing pass deletes
        its plaintext instead of sealing it (`bridge/recordings/backfill.py`)."""
        if conn is not None:
            return await shred_in(conn, recording_id)
        return await self.db.run(lambda conn: shred_in(conn, recording_id))

    async def rewrap_keys(self, batch: int = 500) -> int:
        """Re-wrap up to `batch` data keys held under an older master key with the
        active one (the audio is not touched); returns how many. Keys under a
        master key the ring no longer holds are left alone: nothing can open them."""
        keys = self.db.keys
        older = sorted(set(keys.keys) - {keys.active_id})

        async def rewrap(conn):
            async with conn.transaction():
                rows = await conn.fetch(
                    "SELECT recording_id, key_id, wrapped_key FROM recording_keys WHERE key_id = ANY($1)"
                    " ORDER BY recording_id LIMIT $2 FOR UPDATE SKIP LOCKED", older, batch)
                rewrapped = []
                for r in rows:
                    context = recording_key_context(r["recording_id"])
                    try:
                        dek = keys.open(r["key_id"], r["wrapped_key"], context)
                    except DecryptionFailed:
                        raise DecryptionFailed(f"the key of recording {r['recording_id']} does not open") from None
                    new = keys.seal(dek, context)
                    rewrapped.append((r["recording_id"], new.key_id, new.blob))
                await conn.executemany("UPDATE recording_keys SET key_id = $2, wrapped_key = $3"
                                       " WHERE recording_id = $1", rewrapped)
                return len(rewrapped)

        return await self.db.run(rewrap) if older else 0

    async def keys_by_master(self) -> dict[str, int]:
        """Wrapped recording keys per master key id (`masking keys status`)."""
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT key_id, count(*) FROM recording_keys GROUP BY key_id"))
        return {r["key_id"]: r["count"] for r in rows}

    async def unsealed(self, after: uuid.UUID, limit: int) -> list[dict]:
        """Recordings still stored as plaintext, in id order after `after`."""
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT id, storage_path, bytes, sha256, shredded_at FROM recordings WHERE NOT sealed AND id > $1"
            " ORDER BY id LIMIT $2", after, limit))
        return [dict(r) for r in rows]

    async def mark_sealed(self, recording_id: uuid.UUID, storage_path: str, key: Sealed) -> bool:
        """Point a plaintext recording at its sealed file and store its wrapped
        key; False if another sealer got there first (its file counts, not
        this one). A recording shredded meanwhile keeps no key."""
        async def mark(conn):
            async with conn.transaction():
                row = await conn.fetchrow(
                    "UPDATE recordings SET sealed = true, storage_path = $2 WHERE id = $1 AND NOT sealed"
                    " RETURNING shredded_at", recording_id, storage_path)
                if row is not None and row["shredded_at"] is None:
                    await insert_key_in(conn, recording_id, key)
                return row is not None

        return await self.db.run(mark)
