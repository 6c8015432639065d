"""Data subjects' SQL: everything held about one number, and their requests.

A number is found by its keyed hash (`session_participants.number_hash`, an
index hit), never stored in clear here either: requests keep the hash and a
masked hint. Every change to a request is audited in its own transaction.
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from bridge.numbering import mask_number
from bridge.privacy.audit import Actor, AuditEntry
from bridge.privacy.crypto import number_context
from bridge.privacy.subject_access import RequestMismatch, RequestNotOpen, SubjectRequest, clean_notes
from bridge.sessions.models import MaskingSession
from bridge.store.audit import AuditTrail, entry_from_row
from bridge.store.db import Database
from bridge.store.errors import NotFound
from bridge.store.rows import session_from_row


class Subjects:
    """`store.subjects`: what is held about one person, and their requests (`subject_requests`)."""

    def __init__(self, db: Database, audit: AuditTrail):
        self.db, self.audit = db, audit

    async def sessions(self, subject_hash: bytes | list[bytes]) -> list[MaskingSession]:
        """Every session the number took part in, oldest first (`subject_hash`: one, or
        the number's hash under each lookup key, `KeyRing.kept_hashes`)."""
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT * FROM masking_sessions WHERE id IN"
            " (SELECT session_id FROM session_participants WHERE number_hash = ANY($1)) ORDER BY created_at, id",
            _hashes(subject_hash)))
        return [session_from_row(self.db.keys, r) for r in rows]

    async def calls_and_recordings(self, session_ids: list[uuid.UUID]) -> tuple[list[dict], list[dict]]:
        """The calls of these sessions and their recordings, oldest first."""

        async def read(conn):
            calls = await conn.fetch(
                "SELECT c.*, r.id AS recording_id FROM calls c LEFT JOIN recordings r ON r.call_id = c.id"
                " WHERE c.session_id = ANY($1) ORDER BY c.started_at, c.id", session_ids)
            recordings = await conn.fetch(
                "SELECT r.*, c.session_id FROM recordings r JOIN calls c ON c.id = r.call_id"
                " WHERE c.session_id = ANY($1) ORDER BY r.created_at, r.id", session_ids)
            return [dict(c) for c in calls], [dict(r) for r in recordings]

        return await self.db.run(read)

    async def disclosures(self, subject_hash: bytes | list[bytes], session_ids: list[uuid.UUID],
                                  since: datetime) -> list[AuditEntry]:
        """Audit rows about the number, or about one of its sessions (the other
        party's exports list the sessions they disclosed), since `since`, oldest first."""
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT * FROM audit_log WHERE at >= $3 AND (subject_hash = ANY($1) OR session_id = ANY($2)"
            " OR (action = 'subject.exported' AND details->'session_ids' ?| $4::text[])) ORDER BY seq",
            _hashes(subject_hash), session_ids, since, [str(i) for i in session_ids]))
        return [entry_from_row(r) for r in rows]

    # -- requests ---------------------------------------------------------------------
    async def open_request(self, kind: str, number: str, received_at: datetime, due_at: datetime,
                                   by: Actor, notes: str | None = None) -> SubjectRequest:
        """Track a request received from the person with `number` (stored as its hash)."""
        keys, lookup, request_id = self.db.keys, self.db.keys.lookups(), uuid.uuid4()
        subject_hash = lookup.hash(number)
        # Sealed beside its hash so a lookup-key rotation re-hashes it (bridge/store/lookup_keys.py).
        sealed = keys.seal_number(number, number_context("subject_requests", request_id, "subject"))

        async def insert(conn):
            async with conn.transaction():
                row = await conn.fetchrow(
                    "INSERT INTO subject_requests (id, kind, subject_hash, subject_hint, received_at, due_at, actor,"
                    " notes, subject_sealed, key_id, lookup_key_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
                    " $11) RETURNING *",
                    request_id, kind, subject_hash, mask_number(number), received_at, due_at, by.name,
                    clean_notes(notes), sealed, keys.row_key_id, lookup.active)
                await self.audit.append_by(by, "subject.request.opened", "subject_request", str(request_id), conn,
                                    subject_hash=subject_hash,
                                    details={"kind": kind, "received_at": received_at.isoformat(),
                                             "due_at": due_at.isoformat()})
                return _request(row)

        return await self.db.run(insert)

    async def request(self, request_id: uuid.UUID) -> tuple[SubjectRequest, bytes]:
        """A request and its subject's hash (to check it against a number)."""
        row = await self.db.run(lambda conn: conn.fetchrow("SELECT * FROM subject_requests WHERE id = $1", request_id))
        if row is None:
            raise NotFound("no such subject request")
        return _request(row), row["subject_hash"]

    async def open_request_for(self, request_id: uuid.UUID, number: str, kinds: tuple[str, ...]) -> SubjectRequest:
        """The request an action on `number` answers: it must be open, about that
        number, and of one of `kinds` (an export: access, correction; an erasure: erasure)."""
        request, subject_hash = await self.request(request_id)
        _check_request(request, subject_hash, self.db.keys.kept_hashes(number), kinds)
        return request

    async def lock_open_request(self, conn: asyncpg.Connection, request_id: uuid.UUID,
                                subject_hash: bytes | list[bytes],
                                kinds: tuple[str, ...]) -> SubjectRequest:
        """`open_request_for`, in the caller's transaction, the row locked to its
        end: nobody closes it meanwhile. Take it before any other lock (the
        audit trail's above all: closing a request locks the row, then audits)."""
        row = await conn.fetchrow("SELECT * FROM subject_requests WHERE id = $1 FOR UPDATE", request_id)
        if row is None:
            raise NotFound("no such subject request")
        request = _request(row)
        _check_request(request, row["subject_hash"], subject_hash, kinds)
        return request

    async def audit_export(self, by: Actor, target_id: str, subject_hash: bytes, details: dict[str, Any],
                                   request_id: uuid.UUID | None = None,
                                   kinds: tuple[str, ...] = (),
                                   request_hashes: list[bytes] | None = None) -> AuditEntry:
        """The subject.exported row; with `request_id`, only while that request is
        still open (its row locked in the same transaction: nobody closes it
        between the check and the row)."""

        async def append(conn):
            async with conn.transaction():
                if request_id is not None:
                    await self.lock_open_request(conn, request_id, request_hashes or subject_hash, kinds)
                return await self.audit.append_by(by, "subject.exported", "subject", target_id, conn,
                                           subject_hash=subject_hash, details=details)

        return await self.db.run(append)

    async def verify_request(self, request_id: uuid.UUID, method: str, by: Actor,
                             checked_by: str | None = None) -> SubjectRequest:
        """Record how the requester's identity was checked and by whom (`checked_by`,
        else `by`), once; audited. An export answering the request is refused until then."""

        async def verify(conn):
            async with conn.transaction():
                row = await conn.fetchrow("SELECT * FROM subject_requests WHERE id = $1 FOR UPDATE", request_id)
                if row is None:
                    raise NotFound("no such subject request")
                if row["status"] != "open":
                    raise RequestNotOpen(f"the request is already {row['status']}")
                if row["verified_at"] is not None:
                    return _request(row)
                row = await conn.fetchrow(
                    "UPDATE subject_requests SET verified_at = now(), verified_by = $2, verify_method = $3"
                    " WHERE id = $1 RETURNING *", request_id, checked_by or by.name, method)
                await self.audit.append_by(by, "subject.request.verified", "subject_request", str(request_id),
                                           conn, subject_hash=row["subject_hash"],
                                           details={"kind": row["kind"], "method": method,
                                                    "checked_by": checked_by or by.name})
                return _request(row)

        return await self.db.run(verify)

    async def list_requests(self, status: str | None = None, overdue: bool = False,
                                    kind: str | None = None, limit: int = 100) -> list[SubjectRequest]:
        """Requests by due date, soonest first; `overdue`: open ones past their due date."""
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT * FROM subject_requests WHERE ($1::text IS NULL OR status = $1)"
            " AND (NOT $2 OR (status = 'open' AND due_at < now())) AND ($3::text IS NULL OR kind = $3)"
            " ORDER BY due_at, id LIMIT $4", status, overdue, kind, limit))
        return [_request(r) for r in rows]

    async def complete_request(self, request_id: uuid.UUID, by: Actor, status: str = "done",
                                       notes: str | None = None, conn: asyncpg.Connection | None = None,
                                       details: dict[str, Any] | None = None) -> SubjectRequest:
        """Mark an open request answered (`done`) or `refused`; audited. `conn`: in the
        caller's transaction (an erasure marks its request done with the erasure itself)."""
        if status not in ("done", "refused"):
            raise ValueError("a request is completed as done or refused")

        async def complete(conn):
            async with conn.transaction():
                row = await conn.fetchrow("SELECT * FROM subject_requests WHERE id = $1 FOR UPDATE", request_id)
                if row is None:
                    raise NotFound("no such subject request")
                if row["status"] != "open":
                    raise RequestNotOpen(f"the request is already {row['status']}")
                notes_ = clean_notes(notes)
                row = await conn.fetchrow(
                    "UPDATE subject_requests SET status = $2, completed_at = now(), completed_by = $3,"
                    " notes = coalesce($4, notes) WHERE id = $1 RETURNING *", request_id, status, by.name, notes_)
                await self.audit.append_by(by, "subject.request.closed", "subject_request", str(request_id), conn,
                                    subject_hash=row["subject_hash"],
                                    details={"kind": row["kind"], "status": status,
                                             "overdue": row["completed_at"] > row["due_at"], **(details or {})})
                return _request(row)

        return await (complete(conn) if conn is not None else self.db.run(complete))


def _hashes(subject_hash: bytes | list[bytes]) -> list[bytes]:
    return [subject_hash] if isinstance(subject_hash, bytes) else list(subject_hash)


def _check_request(request: SubjectRequest, request_hash: bytes, subject_hash: bytes | list[bytes],
                   kinds: tuple[str, ...]) -> None:
    # A request made before a lookup-key rotation holds the hash under an older key.
    if request_hash not in _hashes(subject_hash):
        raise RequestMismatch("that request is for another number")
    if request.kind not in kinds:
        raise RequestMismatch(f"this answers {' or '.join(kinds)} requests, not {request.kind}")
    if request.status != "open":
        raise RequestNotOpen(f"the request is already {request.status}")


def _request(row: asyncpg.Record) -> SubjectRequest:
    return SubjectRequest(
        id=row["id"], kind=row["kind"], subject_hint=row["subject_hint"], received_at=row["received_at"],
        due_at=row["due_at"], status=row["status"], actor=row["actor"], completed_at=row["completed_at"],
        completed_by=row["completed_by"], notes=row["notes"], verified_at=row.get("verified_at"),
        verified_by=row.get("verified_by"), verify_method=row.get("verify_method"))
