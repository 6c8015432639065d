"""Corrections' SQL (PDPA s22): a subject's number corrected in every session
it is held in, and the correction sent to the past year's recipients of those
sessions' data, in one transaction with its audit row (and, when it answers
one, the correction request marked done).

Sessions under legal hold keep what they hold (reported); anonymised ones hold
no number. The past recipients are the webhook destinations that had an event
of one of those sessions delivered in the past 365 days: each gets one
`subject.corrected` event naming its sessions, the role corrected and the new
number masked, never a number in clear."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bridge.numbering import mask_number
from bridge.privacy.audit import Actor
from bridge.privacy.rights import IdentityNotVerified, NothingToCorrect
from bridge.sessions.caller_id import role_of
from bridge.store.audit import AuditTrail
from bridge.store.db import Database
from bridge.store.errors import NumberInUse
from bridge.store.outbox import enqueue_in
from bridge.store.rows import seal_participants, session_from_row
from bridge.store.subjects import Subjects

RECIPIENTS = (
    "SELECT url, array_agg(DISTINCT session_id::text ORDER BY session_id::text) AS session_ids"
    " FROM webhook_outbox WHERE session_id = ANY($1::uuid[]) AND status = 'delivered'"
    " AND coalesce(delivered_at, created_at) > now() - interval '365 days' GROUP BY url ORDER BY url")


@dataclass
class CorrectionReport:
    subject: str  # masked
    corrected_to: str  # masked
    fields: list[str]
    sessions_corrected: list[uuid.UUID] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)  # {session_id, reason}
    recipients_notified: int = 0
    audit_seq: int | None = None
    request_id: uuid.UUID | None = None

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "corrected_to": self.corrected_to, "fields": self.fields,
                "sessions_corrected": [str(s) for s in self.sessions_corrected], "kept": self.kept,
                "recipients_notified": self.recipients_notified, "audit_seq": self.audit_seq,
                "request_id": str(self.request_id) if self.request_id else None}


class Corrections:
    """`store.corrections`."""

    def __init__(self, db: Database, audit: AuditTrail, subjects: Subjects):
        self.db, self.audit, self.subjects = db, audit, subjects

    async def correct_number(self, number: str, corrected: str, by: Actor,
                             request_id: uuid.UUID | None = None) -> CorrectionReport:
        """Replace `number` by `corrected` (both E.164) in every session that holds
        it; with `request_id`, only for that open, identity-checked correction
        request about `number`, marked done with it."""
        if corrected == number:
            raise NothingToCorrect("the corrected number is the number held")
        keys = self.db.keys
        lookup = keys.lookups()  # one reading: the hashes written and their key's label agree
        old_hash, old_hashes, new_hash = lookup.hash(number), lookup.kept_hashes(number), lookup.hash(corrected)
        report = CorrectionReport(mask_number(number), mask_number(corrected), ["number"], request_id=request_id)

        async def correct(conn: asyncpg.Connection):
            async with conn.transaction():
                if request_id is not None:
                    request = await self.subjects.lock_open_request(conn, request_id, old_hashes, ("correction",))
                    if request.verified_at is None:
                        raise IdentityNotVerified("the requester's identity has not been verified: record the"
                                                  " check first (masking subject request verify)")
                rows = await conn.fetch(
                    "SELECT * FROM masking_sessions WHERE (participant_a_hash = ANY($1) OR participant_b_hash = ANY($1))"
                    " AND anonymised_at IS NULL ORDER BY id FOR UPDATE", old_hashes)
                roles: dict[str, str] = {}
                for row in rows:
                    if row["legal_hold_at"] is not None:
                        report.kept.append({"session_id": str(row["id"]), "reason": "legal_hold"})
                        continue
                    session = session_from_row(keys, row)
                    role = role_of(session, number)
                    a, b = (corrected, session.participant_b) if role == "a" else (session.participant_a, corrected)
                    await conn.execute(
                        "UPDATE masking_sessions SET participant_a_hash = $2, participant_b_hash = $3,"
                        " participant_a_sealed = $4, participant_b_sealed = $5, key_id = $6, lookup_key_id = $7"
                        " WHERE id = $1", row["id"], *seal_participants(keys, row["id"], a, b, lookup), lookup.active)
                    try:
                        async with conn.transaction():
                            await conn.execute("UPDATE session_participants SET number_hash = $3, lookup_key_id = $4"
                                               " WHERE session_id = $1 AND role = $2", row["id"], role, new_hash,
                                               lookup.active)
                    except asyncpg.UniqueViolationError:
                        raise NumberInUse("the corrected number already holds this virtual number in a live"
                                          " session") from None
                    report.sessions_corrected.append(row["id"])
                    roles[str(row["id"])] = role
                for recipient in await conn.fetch(RECIPIENTS, report.sessions_corrected):
                    sessions = list(recipient["session_ids"])
                    await enqueue_in(conn, "subject.corrected", None, recipient["url"], {
                        "fields": report.fields, "corrected_to": report.corrected_to,
                        "sessions": [{"session_id": s, "role": roles[s]} for s in sessions]})
                    report.recipients_notified += 1
                entry = await self.audit.append_by(
                    by, "subject.corrected", "subject", report.subject, conn, subject_hash=old_hash,
                    details={k: v for k, v in report.to_json().items() if k not in ("subject", "audit_seq")})
                report.audit_seq = entry.seq
                if request_id is not None:
                    await self.subjects.complete_request(
                        request_id, by, conn=conn, details={"answered_by": "subject.corrected",
                                                            "fields": report.fields,
                                                            "sessions_corrected": len(report.sessions_corrected)})
                return report

        return await self.db.run(correct)
