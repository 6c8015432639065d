"""Reads that reveal participants' numbers, in the audit trail: one row per number
revealed, so each person's disclosure log (`store.subjects.disclosures`, the
subject export) lists every time their number was shown, to whom and why.

A list read writes its rows in one transaction (one lock on the chain, one
round trip per row), before the answer goes out: no number is shown without
its row. Anonymised sessions reveal no number and write none.
"""
from __future__ import annotations

from typing import Any, Iterable

from bridge.privacy.audit import Actor
from bridge.sessions.models import MaskingSession
from bridge.store.audit import AuditTrail
from bridge.store.db import Database


class Disclosures:
    """`store.disclosures`."""

    def __init__(self, db: Database, audit: AuditTrail):
        self.db, self.audit = db, audit

    async def sessions_read(self, by: Actor, sessions: Iterable[MaskingSession], details: dict[str, Any]) -> int:
        """A `session.read` row for each number of each session (the subject's
        keyed hash, the session, `details`); returns how many were written."""
        revealed = [(session, role, number) for session in sessions
                    for role, number in (("a", session.participant_a), ("b", session.participant_b)) if number]
        if not revealed:
            return 0
        keys = self.db.keys

        async def append(conn):
            async with conn.transaction():
                for session, role, number in revealed:
                    await self.audit.append_by(by, "session.read", "session", str(session.id), conn,
                                               session_id=session.id, subject_hash=keys.lookup_hash(number),
                                               details={**details, "participant": role})
            return len(revealed)

        return await self.db.run(append, timeout=max(self.db.timeout, 0.01 * len(revealed)))
