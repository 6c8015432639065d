"""The disclosure ledger's writes (bridge/privacy/ledger.py says what counts):
each read that reveals a participant's number or call, each session created,
each out-of-session question and each delivered webhook, in the audit trail.

A row about one number carries the subject's keyed hash: a read or a creation
writes one row per number revealed, in one transaction (one lock on the chain),
before the answer goes out, so no number is shown without its row. Anonymised
sessions reveal no number and write none. Rows about a whole session (a call
record, a webhook) carry the session: a subject is found in them through the
sessions they took part in. Outbound rows name the destination's host and
country, never its URL (it may carry a token).
"""
from __future__ import annotations

import socket
from typing import Any, Iterable

import asyncpg

from bridge.privacy import ledger
from bridge.privacy.audit import Actor
from bridge.sessions.models import MaskingSession
from bridge.store.audit import AuditTrail, NewRow
from bridge.store.db import Database


def service_actor() -> Actor:
    """The bridge itself, for what it sends on its own (webhooks, the out-of-session question)."""
    return Actor("service", f"service@{socket.gethostname()}")


class Disclosures:
    """`store.disclosures`."""

    def __init__(self, db: Database, audit: AuditTrail):
        self.db, self.audit = db, audit

    async def sessions_read(self, by: Actor, sessions: Iterable[MaskingSession], details: dict[str, Any]) -> int:
        """A `session.read` row for each number of each session (the subject's
        keyed hash, the session, `details`); returns how many were written."""
        return await self.numbers(by, ledger.SESSION_READ, sessions, details)

    async def session_created(self, by: Actor, session: MaskingSession, details: dict[str, Any]) -> int:
        """A `session.created` row for each of its numbers: handed to the bridge and answered back."""
        return await self.numbers(by, ledger.SESSION_CREATED, [session], details)

    async def numbers(self, by: Actor, action: str, sessions: Iterable[MaskingSession],
                      details: dict[str, Any]) -> int:
        revealed = [(session, role, number) for session in sessions
                    for role, number in (("a", session.participant_a), ("b", session.participant_b)) if number]
        if not revealed:
            return 0
        keys = self.db.keys

        rows = [NewRow.by(by, action, "session", str(session.id), session_id=session.id,
                          subject_hash=keys.lookup_hash(number), details={**details, "participant": role})
                for session, role, number in revealed]
        await self.db.run(lambda conn: self.audit.append_rows(rows, conn),
                          timeout=max(self.db.timeout, 0.01 * len(rows)))
        return len(rows)

    async def calls_read(self, by: Actor, calls: Iterable[dict], details: dict[str, Any]) -> int:
        """A `call.read` row for each call record shown (about its session as a whole)."""
        rows = [NewRow.by(by, ledger.CALL_READ, "call", str(call["id"]), session_id=call.get("session_id"),
                          details=details) for call in calls]
        if not rows:
            return 0
        await self.db.run(lambda conn: self.audit.append_rows(rows, conn),
                          timeout=max(self.db.timeout, 0.01 * len(rows)))
        return len(rows)

    async def out_of_session(self, caller: str | None, destination: dict[str, str], details: dict[str, Any]) -> None:
        """The caller's number about to go to the business: written before it is sent (a withheld one: no hash)."""
        await self.audit.append_by(service_actor(), ledger.OUT_OF_SESSION, "destination", destination["host"],
                                   subject_hash=self.db.keys.lookup_hash(caller) if caller else None,
                                   details={**destination, **details, "caller": "known" if caller else "withheld"})

    async def webhooks_delivered(self, delivered: list[tuple[dict, dict[str, str]]],
                                 conn: asyncpg.Connection | None = None) -> None:
        """Events the business's hosts accepted, each with its destination (in
        `conn`'s transaction: the outbox marks them delivered)."""
        by = service_actor()
        await self.audit.append_rows([
            NewRow.by(by, ledger.WEBHOOK_DELIVERED, "webhook", destination["host"], session_id=event.get("session_id"),
                      details={**destination, "event_type": event["event_type"], "event_id": str(event["event_id"])})
            for event, destination in delivered], conn)
