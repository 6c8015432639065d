"""Withdrawn consent's SQL (`do_not_record`): PDPA s16, as a lifecycle.

A person who withdraws consent is kept here by the keyed hash of their number
(`KeyRing.lookup_hash`, the one hash sessions' participants are found by;
never the number). From then on:
- their calls are not recorded: every lookup the call paths make (ARI and
  FastAGI alike, by number or by PIN) reads `WITHDRAWN` beside the session,
  and `rows.session_from_row` turns its `record` off;
- their past recordings are not read (`recording_withdrawn`), unless the
  session is under legal hold, in which case each read says so in its audit row.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from bridge.privacy.audit import Actor
from bridge.privacy.subject_access import WITHDRAWAL_CONSEQUENCES, SubjectRequest
from bridge.store.audit import AuditTrail
from bridge.store.db import Database
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
        number_hash = self.db.keys.lookup_hash(number)

        async def withdraw(conn):
            async with conn.transaction():
                await conn.execute("INSERT INTO do_not_record (number_hash, request_id) VALUES ($1, $2)"
                                   " ON CONFLICT (number_hash) DO NOTHING", number_hash, request.id)
                await self.audit.append_by(by, "subject.consent_withdrawn", "subject_request", str(request.id),
                                           conn, subject_hash=number_hash,
                                           details={"consequences": list(WITHDRAWAL_CONSEQUENCES)})
                return await self.subjects.complete_request(request.id, by, "done", conn=conn)

        return await self.db.run(withdraw)

    async def is_withdrawn(self, number: str) -> bool:
        return bool(await self.db.run(lambda conn: conn.fetchval(
            "SELECT 1 FROM do_not_record WHERE number_hash = $1", self.db.keys.lookup_hash(number))))

    async def recording_use(self, recording_id: uuid.UUID) -> tuple[bool, str | None]:
        """(a participant withdrew consent, the session's legal hold reason or None)."""
        row = await self.db.run(lambda conn: conn.fetchrow(
            f"SELECT {WITHDRAWN} AS withdrawn, masking_sessions.legal_hold_reason FROM recordings r"
            " JOIN calls c ON c.id = r.call_id JOIN masking_sessions ON masking_sessions.id = c.session_id"
            " WHERE r.id = $1", recording_id))
        return (bool(row["withdrawn"]), row["legal_hold_reason"]) if row else (False, None)

    async def session_withdrawn(self, session_id: uuid.UUID) -> bool:
        """Whether a participant of the session withdrew consent."""
        return bool(await self.db.run(lambda conn: conn.fetchval(
            f"SELECT {WITHDRAWN} FROM masking_sessions WHERE id = $1", session_id)))
