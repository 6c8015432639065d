"""Erasure's SQL: every session of one number anonymised (bridge/store/retention.py's
`anonymise_session`), except those under legal hold, under the preservation
hold of either party's request (bridge/store/preservation.py) or in a call, a batch per
transaction, each audited with the subject's keyed hash, never the number."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from bridge.numbering import mask_number
from bridge.privacy.audit import Actor
from bridge.privacy.retention import SessionToErase, plan_erasure
from bridge.store.audit import AuditTrail
from bridge.store.db import Database
from bridge.store.errors import RotationInProgress
from bridge.store.expiry import expire_due_in
from bridge.store.lookup_keys import rotation_pending
from bridge.store.preservation import PRESERVED
from bridge.store.retention import BATCH_SECONDS, EXPIRE_BATCH, Retention, RetirePlaintext
from bridge.store.subjects import Subjects


@dataclass
class ErasureReport:
    subject: str  # masked, never the number
    sessions_erased: list[uuid.UUID] = field(default_factory=list)
    closed_first: list[uuid.UUID] = field(default_factory=list)
    recordings_shredded: int = 0
    calls_cleared: int = 0
    kept: list[dict[str, Any]] = field(default_factory=list)  # {session_id, reason, legal_hold_reason}
    audit_seq: int | None = None
    request_id: uuid.UUID | None = None  # the erasure request answered

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "sessions_erased": len(self.sessions_erased),
                "session_ids": [str(s) for s in self.sessions_erased],
                "closed_first": [str(s) for s in self.closed_first],
                "recordings_shredded": self.recordings_shredded, "calls_cleared": self.calls_cleared,
                "kept": self.kept, "audit_seq": self.audit_seq,
                "request_id": str(self.request_id) if self.request_id else None}


class Erasure:
    """`store.erasure`."""

    def __init__(self, db: Database, audit: AuditTrail, subjects: Subjects, retention: Retention):
        self.db, self.audit, self.subjects, self.retention = db, audit, subjects, retention

    async def erase(self, number: str, by: Actor, batch: int = 200, request_id: uuid.UUID | None = None,
                    webhook_url: str | None = None, retire: RetirePlaintext | None = None) -> ErasureReport:
        """Anonymise every session `number` (E.164) takes part in, found by its
        keyed hash, except those under legal hold or with a call in progress
        (reported, with why); a live one is closed first.

        A batch per transaction, each audited in it, with the subject's keyed
        hash and the sessions it erased (never the number): a batch that fails
        leaves the ones before it in the trail, which a retry no longer finds.
        The last batch writes subject.erased with the whole report. `request_id`:
        the open erasure request this answers, locked first in every batch (a
        request closed meanwhile stops the erasure at its next batch) and marked
        done with the last; refused before anything is erased if it is not one.
        `webhook_url`: where session.expired goes for sessions without their own
        (the expiry that runs first, in its own transaction). `retire`: as for `purge`."""
        subject = self.db.keys.lookup_hash(number)  # what the audit rows record
        hashes = self.db.keys.kept_hashes(number)  # what finds the rows: rotation may be under way
        if await rotation_pending(self.db):
            raise RotationInProgress("a lookup-key rotation is in progress: run `masking keys rehash` to its end first")
        if request_id is not None:
            await self.subjects.open_request_for(request_id, number, ("erasure",))
        await self._expire_all(webhook_url)
        report = ErasureReport(subject=mask_number(number), request_id=request_id)

        async def erase_batch(conn, after):
            async with conn.transaction():
                if request_id is not None:  # the row lock before any other, as closing a request takes them
                    await self.subjects.lock_open_request(conn, request_id, hashes, ("erasure",))
                rows = await conn.fetch(
                    "SELECT s.id, s.status, s.expires_at > now() AS unexpired, s.legal_hold_at IS NOT NULL AS held,"
                    f" s.legal_hold_reason, {PRESERVED} AS preserved,"
                    " EXISTS (SELECT 1 FROM calls c WHERE c.session_id = s.id"
                    "   AND c.disposition = 'in_progress') AS call_in_progress"
                     " FROM masking_sessions s WHERE (s.participant_a_hash = ANY($1) OR s.participant_b_hash = ANY($1))"
                    " AND ($2::uuid IS NULL OR s.id > $2) ORDER BY s.id LIMIT $3 FOR UPDATE OF s",
                    hashes, after, batch)
                plan = plan_erasure([SessionToErase(
                    r["id"], live=r["status"] == "active" and r["unexpired"], held=r["held"],
                    call_in_progress=r["call_in_progress"], hold_reason=r["legal_hold_reason"],
                    preserved=r["preserved"]) for r in rows])
                for session_id in plan.close_first:
                    await conn.execute("UPDATE masking_sessions SET status = 'closed', closed_at = now()"
                                       " WHERE id = $1", session_id)
                shredded, cleared, plaintext = 0, 0, []
                for session_id in plan.erase:
                    s, c = await self.retention.anonymise_session(conn, session_id, plaintext)
                    shredded, cleared = shredded + s, cleared + c
                last = len(rows) < batch
                if plan.erase and not last:  # the last batch's sessions are in subject.erased
                    await self.audit.append_by(
                        by, "subject.erasure.batch", "subject", report.subject, conn, subject_hash=subject,
                        details={"session_ids": [str(i) for i in plan.erase],
                                 "closed_first": [str(i) for i in plan.close_first],
                                 "recordings_shredded": shredded, "calls_cleared": cleared,
                                 "request_id": str(request_id) if request_id else None})
                done = ErasureReport(
                    report.subject, report.sessions_erased + plan.erase, report.closed_first + plan.close_first,
                    report.recordings_shredded + shredded, report.calls_cleared + cleared,
                    report.kept + [{"session_id": str(s), "reason": why.value, "legal_hold_reason": hold}
                                   for s, why, hold in plan.kept], None, request_id)
                if last:  # the audit row commits with it
                    entry = await self.audit.append_by(
                        by, "subject.erased", "subject", report.subject, conn, subject_hash=subject,
                        details={k: v for k, v in done.to_json().items() if k not in ("subject", "audit_seq")})
                    done.audit_seq = entry.seq
                    if request_id is not None:
                        await self.subjects.complete_request(
                            request_id, by, conn=conn,
                            details={"sessions_erased": len(done.sessions_erased), "kept": len(done.kept)})
                return done, (rows[-1]["id"] if rows else after), len(rows), plaintext

        after, scanned = None, batch
        while scanned == batch:
            report, after, scanned, plaintext = await self.db.run(lambda conn: erase_batch(conn, after),
                                                                  timeout=BATCH_SECONDS)
            if retire is not None and plaintext:
                await retire(plaintext)
        return report

    async def _expire_all(self, webhook_url: str | None) -> None:
        """Expire every session past its time, 500 a transaction, as the service's
        timer does (session.expired to `webhook_url` when a session has none)."""
        async def expire(conn):
            async with conn.transaction():
                return len(await expire_due_in(conn, webhook_url, EXPIRE_BATCH))

        while await self.db.run(expire, timeout=BATCH_SECONDS) == EXPIRE_BATCH:
            pass
