"""Withdrawn consent's SQL (`do_not_record`): PDPA s16, as a lifecycle.

A person who withdraws consent is kept here by the keyed hash of their number
(under the active lookup key, the hash sessions' participants are found by),
with the number sealed beside it so `masking keys rehash` can move the row to
a new lookup key (bridge/store/lookup_keys.py). From then on:
- their calls are not recorded: every lookup the call paths make (ARI and
  FastAGI alike, by number or by PIN) reads `WITHDRAWN` beside the session,
  and `rows.session_from_row` turns its `record` off;
- their past recordings are not read (`recording_withdrawn`), unless the
  session is under legal hold, in which case each read says so in its audit row.

`WITHDRAWN` compares hashes in SQL, so it holds while every row is under one
lookup key. During a rotation (more than one key in use) a session and the
list may be under different keys: `rotation_safe` then checks the sessions'
numbers under every key in use, so no one who withdrew is recorded meanwhile.
"""
from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime

import asyncpg

from bridge.privacy.audit import Actor
from bridge.privacy.crypto import KeyRing, number_context
from bridge.privacy.subject_access import WITHDRAWAL_CONSEQUENCES, SubjectRequest
from bridge.store.audit import AuditTrail
from bridge.sessions.models import MaskingSession
from bridge.store.db import Database
from bridge.store.rows import session_from_row
from bridge.store.subjects import Subjects

# Whether either participant of the `masking_sessions` row in scope withdrew consent.
WITHDRAWN = ("EXISTS (SELECT 1 FROM do_not_record d"
             " WHERE d.number_hash IN (masking_sessions.participant_a_hash, masking_sessions.participant_b_hash))")


class Consent:
    """`store.consent`."""

    def __init__(self, db: Database, audit: AuditTrail, subjects: Subjects):
        self.db, self.audit, self.subjects = db, audit, subjects

    async def withdraw(self, number: str, by: Actor, received_at: datetime, due_at: datetime,
                       notes: str | None = None) -> SubjectRequest:
        """Carry out a withdrawal at once: the number on the do-not-record list,
        its request tracked and closed as done, all audited."""
        request = await self.subjects.open_request("withdrawal", number, received_at, due_at, by, notes)
        keys, lookup, row_id = self.db.keys, self.db.keys.lookups(), uuid.uuid4()
        number_hash = lookup.hash(number)

        async def withdraw(conn):
            async with conn.transaction():
                if not await conn.fetchval("SELECT 1 FROM do_not_record WHERE number_hash = ANY($1)",
                                           lookup.hashes(number)):  # already withdrawn, under any key in use
                    await conn.execute(
                        "INSERT INTO do_not_record (id, number_hash, number_sealed, key_id, lookup_key_id, request_id)"
                        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (number_hash) DO NOTHING",
                        row_id, number_hash, keys.seal_number(number, number_context("do_not_record", row_id, "number")),
                        keys.row_key_id, lookup.active, request.id)
                await self.audit.append_by(by, "subject.consent_withdrawn", "subject_request", str(request.id),
                                           conn, subject_hash=number_hash,
                                           details={"consequences": list(WITHDRAWAL_CONSEQUENCES)})
                return await self.subjects.complete_request(request.id, by, "done", conn=conn)

        return await self.db.run(withdraw)

    async def is_withdrawn(self, number: str) -> bool:
        return bool(await self.db.run(lambda conn: conn.fetchval(
            "SELECT 1 FROM do_not_record WHERE number_hash = ANY($1)", self.db.keys.lookup_hashes(number))))

    async def recording_use(self, recording_id: uuid.UUID) -> tuple[bool, str | None]:
        """(a participant withdrew consent, the session's legal hold reason or None)."""
        async def read(conn):
            row = await conn.fetchrow(
                f"SELECT {WITHDRAWN} AS withdrawn, masking_sessions.* FROM recordings r"
                " JOIN calls c ON c.id = r.call_id JOIN masking_sessions ON masking_sessions.id = c.session_id"
                " WHERE r.id = $1", recording_id)
            if row is None:
                return False, None
            return await withdrawn_row(conn, self.db.keys, row), row["legal_hold_reason"]

        return await self.db.run(read)

    async def session_withdrawn(self, session_id: uuid.UUID) -> bool:
        """Whether a participant of the session withdrew consent."""
        async def read(conn):
            row = await conn.fetchrow(f"SELECT {WITHDRAWN} AS withdrawn, * FROM masking_sessions WHERE id = $1",
                                      session_id)
            return row is not None and await withdrawn_row(conn, self.db.keys, row)

        return await self.db.run(read)


async def withdrawn_row(conn: asyncpg.Connection, keys: KeyRing, row: asyncpg.Record) -> bool:
    """`row["withdrawn"]` (WITHDRAWN), checked under every lookup key in use during a rotation."""
    if row["withdrawn"] or len(keys.lookups().in_use) < 2 or row["participant_a_sealed"] is None:
        return bool(row["withdrawn"])
    [session] = await rotation_safe(conn, keys, (replace(session_from_row(keys, row), record=True),))
    return not session.record


async def rotation_safe(conn: asyncpg.Connection, keys: KeyRing,
                        sessions: tuple[MaskingSession, ...]) -> tuple[MaskingSession, ...]:
    """`sessions` with recording off for any whose participant withdrew consent
    under another lookup key than the session's rows (only while a rotation is
    in progress; one round trip then, none otherwise)."""
    lookup = keys.lookups()
    recorded = [s for s in sessions if s.record]
    if len(lookup.in_use) < 2 or not recorded:
        return sessions
    hashes = {s.id: lookup.hashes(s.participant_a) + lookup.hashes(s.participant_b) for s in recorded}
    found = {bytes(h) for h in await conn.fetchval(
        "SELECT coalesce(array_agg(number_hash), '{}') FROM do_not_record WHERE number_hash = ANY($1)",
        [h for group in hashes.values() for h in group])}
    return tuple(replace(s, record=False) if s.id in hashes and found & set(hashes[s.id]) else s for s in sessions)
