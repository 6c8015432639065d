"""Call records' SQL (`calls`): a row inserted when a call starts and updated as
it progresses (through the per-call writer, bridge/calls/record.py), read
back by the API, and the rows a restarted service must adopt or finish.

A call is its session's account's; reads for an API key take its `account_id`
(`owned_by`, bridge/store/apikeys.py), so another account's call is NotFound."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from bridge.store.apikeys import owned_by
from bridge.store.db import Database
from bridge.store.errors import NotFound
from bridge.store.outbox import INSERT_EVENT, event_values

# Columns a call row may be updated with as the call progresses.
CALL_COLUMNS = frozenset({
    "asterisk_node", "path", "session_id", "direction", "callee_channel_id", "ringing_at", "answered_at", "ended_at",
    "disposition", "reject_reason", "dial_status", "caller_hangup_cause", "callee_hangup_cause",
    "hangup_by", "setup_ms", "talk_seconds", "recorded", "notices", "recording_opt_out", "notice_sha256",
    "recording_started_at",
    "recording_channels", "kind", "custom_field", "time_limit_seconds", "caller_answered_at",
    "pin_attempts", "reported",
})


class Calls:
    """`store.calls`."""

    def __init__(self, db: Database):
        self.db = db

    async def insert(self, call_id: uuid.UUID, virtual_number: str, caller_channel_id: str,
                     started_at: datetime, **fields: Any) -> None:
        columns = _checked(fields)
        names = ["id", "virtual_number", "caller_channel_id", "started_at", *columns]
        values = [call_id, virtual_number, caller_channel_id, started_at, *columns.values()]
        placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        await self.db.run(lambda conn: conn.execute(
            f"INSERT INTO calls ({', '.join(names)}) VALUES ({placeholders})", *values
        ))

    async def update(self, call_id: uuid.UUID, **fields: Any) -> None:
        columns = _checked(fields)
        await self.db.run(lambda conn: conn.execute(
            f"UPDATE calls SET {_assignments(columns, 2)} WHERE id = $1", call_id, *columns.values()
        ))

    async def update_and_enqueue(self, call_id: uuid.UUID, fields: dict[str, Any], event: dict[str, Any]) -> None:
        """An update and the webhook event that reports it (`event`: `event_values`'s
        arguments) in one statement, a data-modifying CTE: one round trip for
        an event queued right behind its update (a call's ringing, answered),
        and both or neither. The caller wakes the sender (`Outbox.told`)."""
        columns = _checked(fields)
        await self.db.run(lambda conn: conn.execute(
            f"WITH updated AS (UPDATE calls SET {_assignments(columns, 7)} WHERE id = $6) {INSERT_EVENT}",
            *event_values(**event), call_id, *columns.values()))

    async def get(self, call_id: uuid.UUID, account_id: uuid.UUID | None = None) -> dict:
        row = await self.db.run(lambda conn: conn.fetchrow(
            "SELECT c.*, r.id AS recording_id FROM calls c LEFT JOIN recordings r ON r.call_id = c.id"
            " LEFT JOIN masking_sessions s ON s.id = c.session_id"
            f" WHERE c.id = $1 AND {owned_by('$2', 'c.session_id', 's.account_id')}", call_id, account_id))
        if row is None:
            raise NotFound("no such call")
        return dict(row)

    async def list(self, limit: int = 50, session_id: uuid.UUID | None = None,
                   account_id: uuid.UUID | None = None) -> list[dict]:
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT c.*, r.id AS recording_id, r.storage_path, r.bytes AS recording_bytes,"
            " r.duration_seconds AS recording_seconds, r.shredded_at AS recording_shredded_at"
            " FROM calls c LEFT JOIN recordings r ON r.call_id = c.id"
            " LEFT JOIN masking_sessions s ON s.id = c.session_id"
            f" WHERE ($2::uuid IS NULL OR c.session_id = $2) AND {owned_by('$3', 'c.session_id', 's.account_id')}"
            " ORDER BY c.started_at DESC LIMIT $1", limit, session_id, account_id))
        return [dict(r) for r in rows]

    async def in_progress(self, asterisk_node: str) -> list[dict]:
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT * FROM calls WHERE disposition = 'in_progress' AND asterisk_node = $1 AND path = 'ari'"
            " ORDER BY started_at",
            asterisk_node))
        return [dict(r) for r in rows]

    async def fallback_in_progress(self, asterisk_node: str) -> list[dict]:
        """FastAGI calls on this node whose rows still say `in_progress`: the
        sweep closes those whose caller's channel is gone (`finish` never ran)."""
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT id, caller_channel_id FROM calls WHERE disposition = 'in_progress' AND asterisk_node = $1"
            " AND path = 'agi' ORDER BY started_at", asterisk_node))
        return [dict(r) for r in rows]

    async def close_unfinished_fallback(self, call_id: uuid.UUID) -> bool:
        """End a FastAGI call whose `finish` never ran as `interrupted`, unless
        its row was finished meanwhile; a `finish` written later (replayed from
        a spool) still overwrites this with what it knew."""
        status = await self.db.run(lambda conn: conn.execute(
            "UPDATE calls SET disposition = 'interrupted', hangup_by = coalesce(hangup_by, 'system'),"
            " ended_at = coalesce(ended_at, now())"
            " WHERE id = $1 AND path = 'agi' AND disposition = 'in_progress'", call_id))
        return status == "UPDATE 1"

    async def recording_states(self, call_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict]:
        """For the sweep: each known call's progress, whether it was to be
        recorded, and how many recording rows it has."""
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT c.id, c.disposition, c.recorded, c.recording_channels, c.started_at,"
            " (SELECT count(*) FROM recordings r WHERE r.call_id = c.id) AS recordings"
            " FROM calls c WHERE c.id = ANY($1::uuid[])", call_ids))
        return {r["id"]: dict(r) for r in rows}

    async def live(self, limit: int = 200) -> list[dict]:
        """Calls in progress on every node, oldest first, with whether their
        session records (a recorded call plays the notice before it rings)."""
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT c.id, c.session_id, c.virtual_number, c.direction, c.kind, c.path, c.asterisk_node,"
            " c.started_at, c.ringing_at, c.answered_at, c.caller_answered_at, c.callee_channel_id, c.recorded,"
            " c.pin_attempts, s.record AS session_records"
            " FROM calls c LEFT JOIN masking_sessions s ON s.id = c.session_id"
            " WHERE c.disposition = 'in_progress' ORDER BY c.started_at LIMIT $1", limit))
        return [dict(r) for r in rows]

    async def dispositions_since(self, start: datetime) -> dict[str, int]:
        """How many calls started since `start` ended each way (in_progress included)."""
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT disposition, count(*) FROM calls WHERE started_at >= $1 GROUP BY disposition", start))
        return {r["disposition"]: r["count"] for r in rows}

    async def left_open(self, asterisk_node: str) -> list[uuid.UUID]:
        """ARI calls of this node that ended (started in the last two days) but were not
        closed: their end not told (`reported`, migration 0036), or recorded
        without a recording row. Their process died between the call's end
        and its last writes (`close_left_call`)."""
        # Two branches, each on an index: the few rows not reported (partial
        # index), and the last day's recorded calls (calls_by_start; a call
        # lasts well under a day, MASKING_MAX_CALL_SECONDS).
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT id FROM calls WHERE NOT reported AND asterisk_node = $1 AND path = 'ari'"
            " AND disposition <> 'in_progress' AND started_at > now() - interval '2 days'"
            " UNION SELECT c.id FROM calls c WHERE c.started_at > now() - interval '2 days'"
            " AND c.asterisk_node = $1 AND c.path = 'ari' AND c.recorded"
            " AND c.disposition IN ('answered', 'interrupted', 'time_limit')"
            " AND NOT EXISTS (SELECT 1 FROM recordings r WHERE r.call_id = c.id)", asterisk_node))
        return [r["id"] for r in rows]


def _assignments(columns: dict[str, Any], first: int) -> str:
    """`name = $n, ...` for `columns`, numbered from `first`."""
    return ", ".join(f"{name} = ${i}" for i, name in enumerate(columns, start=first))


def _checked(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - CALL_COLUMNS
    if unknown:
        raise ValueError(f"not call columns: {sorted(unknown)}")
    return fields
