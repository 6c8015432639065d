"""Legal holds' SQL: a session kept whole (numbers, calls, recordings) through
purge and erasure until released, every change audited with its reason."""
from __future__ import annotations

import uuid

from bridge.privacy.audit import Actor, clean_reason
from bridge.sessions.models import MaskingSession
from bridge.store.audit import AuditTrail
from bridge.store.db import Database
from bridge.store.errors import NotFound, SessionAnonymised
from bridge.store.rows import session_from_row


class LegalHolds:
    """`store.holds`."""

    def __init__(self, db: Database, audit: AuditTrail):
        self.db, self.audit = db, audit

    async def set(self, session_id: uuid.UUID, reason: str, by: Actor) -> MaskingSession:
        """Keep the session whole (numbers, calls, recordings) through purge and
        erasure until released; setting it again replaces the reason."""
        reason = clean_reason(reason)
        if reason is None:
            raise ValueError("a legal hold needs a reason")

        async def hold(conn):
            async with conn.transaction():
                row = await conn.fetchrow(
                    "UPDATE masking_sessions SET legal_hold_at = coalesce(legal_hold_at, now()),"
                    " legal_hold_reason = $2, legal_hold_by = $3 WHERE id = $1 AND anonymised_at IS NULL"
                    " RETURNING *", session_id, reason, by.name)
                if row is None:
                    if await conn.fetchval("SELECT 1 FROM masking_sessions WHERE id = $1", session_id):
                        raise SessionAnonymised("the session was anonymised: there is nothing left to hold")
                    raise NotFound("no such session")
                await self.audit.append(by.name, "legal_hold.set", "session", str(session_id), source=by.source,
                                 reason=by.reason or reason, session_id=session_id, conn=conn,
                                 details={"hold_reason": reason})
                return session_from_row(self.db.keys, row)

        return await self.db.run(hold)

    async def list(self, limit: int = 100) -> list[MaskingSession]:
        """Sessions under legal hold, longest held first."""
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT * FROM masking_sessions WHERE legal_hold_at IS NOT NULL ORDER BY legal_hold_at LIMIT $1",
            limit))
        return [session_from_row(self.db.keys, r) for r in rows]

    async def release(self, session_id: uuid.UUID, by: Actor) -> MaskingSession:
        """Lift the hold: retention applies again from the next purge. Idempotent
        (a session not held is returned as it is, and nothing is audited)."""
        async def release(conn):
            async with conn.transaction():
                before = await conn.fetchrow(
                    "SELECT legal_hold_reason FROM masking_sessions WHERE id = $1 FOR UPDATE", session_id)
                if before is None:
                    raise NotFound("no such session")
                row = await conn.fetchrow(
                    "UPDATE masking_sessions SET legal_hold_at = NULL, legal_hold_reason = NULL,"
                    " legal_hold_by = NULL WHERE id = $1 RETURNING *", session_id)
                if before["legal_hold_reason"] is not None:
                    await self.audit.append_by(by, "legal_hold.released", "session", str(session_id), conn,
                                        session_id=session_id,
                                        details={"hold_reason": before["legal_hold_reason"]})
                return session_from_row(self.db.keys, row)

        return await self.db.run(release)
