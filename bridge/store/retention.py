"""Retention's SQL: anonymising a session, the purge's batches, legal hold, erasure.

One primitive, `_anonymise_session`, serves both the purge (a session past its
retention) and erasure (a subject's sessions): numbers nulled, participants
rows, idempotency digests and webhook events deleted, recordings
crypto-shredded, calls' personal details cleared; the row stays, without
personal data, so calls keep their session for accounting. What is due is
decided in `bridge/privacy/retention.py`; this module selects candidates past
the cutoff and applies the verdicts, a bounded batch per transaction, walking
each work list in id order (so rows kept under hold, which stay candidates,
never stall it). A dry run does the same batches as savepoints of a single
transaction, rolled back at the end: exact counts, nothing changed, every row
it touched locked until then.
"""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import asyncpg

from bridge.privacy.audit import Actor, clean_reason
from bridge.privacy.numbers import mask_number
from bridge.privacy.retention import (
    Kind, RetentionPolicy, SessionToErase, Verdict, plan_erasure, session_ended_at, verdict,
)
from bridge.sessions.models import MaskingSession

# Long enough for a batch of shreds and cascades; each statement keeps the pool's own timeout.
BATCH_SECONDS = 60.0
EXPIRE_BATCH = 500
# A dry run is one transaction holding its rows' locks to the end: bounded as a whole too.
DRY_RUN_SECONDS = 1800.0

# Per kind: the candidates past the cutoff ($1) after the last id seen ($2), with
# their retention moment and their session; then the change. A session is
# judged (held or not) from its row: a session is locked as it is decided,
# FOR UPDATE (sessions) or FOR SHARE (the rest, `LOCK_SESSIONS`), so a hold
# committing meanwhile is seen, or waits for the batch.
CANDIDATES = {
    Kind.SESSIONS: (
        "SELECT id, id AS session_id, status, closed_at, expires_at, legal_hold_at IS NOT NULL AS held"
        " FROM masking_sessions s"
        " WHERE anonymised_at IS NULL AND status <> 'active' AND coalesce(closed_at, expires_at) < $1"
        " AND ($2::uuid IS NULL OR id > $2)"
        " AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.session_id = s.id AND c.disposition = 'in_progress')"
        " ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED"),
    Kind.RECORDINGS: (
        "SELECT r.id, r.created_at AS moment, c.session_id, r.sealed, r.storage_path, r.sha256"
        " FROM recordings r JOIN calls c ON c.id = r.call_id"
        " WHERE r.shredded_at IS NULL AND r.created_at < $1 AND ($2::uuid IS NULL OR r.id > $2)"
        " ORDER BY r.id LIMIT $3 FOR UPDATE OF r SKIP LOCKED"),
    Kind.CALL_DETAILS: (
        "SELECT c.id, c.started_at AS moment, c.session_id"
        " FROM calls c"
        " WHERE c.details_purged_at IS NULL AND c.disposition <> 'in_progress' AND c.started_at < $1"
        " AND ($2::uuid IS NULL OR c.id > $2) ORDER BY c.id LIMIT $3 FOR UPDATE OF c SKIP LOCKED"),
    Kind.WEBHOOK_EVENTS: (
        "SELECT o.id, o.created_at AS moment, o.session_id"
        " FROM webhook_outbox o"
        " WHERE o.status <> 'pending' AND o.created_at < $1 AND ($2::bigint IS NULL OR o.id > $2)"
        " ORDER BY o.id LIMIT $3 FOR UPDATE OF o SKIP LOCKED"),
}
# The candidates' sessions, locked against a hold (its UPDATE) until the batch
# commits, and read as locked. SKIP LOCKED: one being changed right now (a
# hold being set, an erasure) is left, with its rows, for the next purge; waiting
# could deadlock with an erasure, which locks the session and then its rows.
LOCK_SESSIONS = (
    "SELECT id, legal_hold_at IS NOT NULL AS held FROM masking_sessions WHERE id = ANY($1::uuid[])"
    " ORDER BY id FOR SHARE SKIP LOCKED")
CLEAR_CALL_DETAILS = (
    "UPDATE calls SET custom_field = NULL, direction = NULL, details_purged_at = now()"
    " WHERE details_purged_at IS NULL AND {where}")


@dataclass
class PurgeReport:
    """Per kind, rows purged and rows past their time kept under legal hold."""

    dry_run: bool = False
    purged: dict[Kind, int] = field(default_factory=lambda: {k: 0 for k in Kind})
    held: dict[Kind, int] = field(default_factory=lambda: {k: 0 for k in Kind})
    batches: dict[Kind, list[int]] = field(default_factory=lambda: {k: [] for k in Kind})  # changes per batch
    held_sessions: set[uuid.UUID] = field(default_factory=set)  # the holds that kept them

    @property
    def total(self) -> int:
        return sum(self.purged.values())

    def to_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run,
                "kinds": {k.value: {"purged": self.purged[k], "held": self.held[k],
                                    "batches": len(self.batches[k])} for k in Kind},
                "held_sessions": sorted(str(s) for s in self.held_sessions)}


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


class RetentionQueries:
    """Store methods for retention (mixed into `Store`: `_run`, `keys`, `audit_by`, `shred_recording`)."""

    async def _anonymise_session(self, conn: asyncpg.Connection, session_id: uuid.UUID,
                                 plaintext: list[dict] | None = None) -> tuple[int, int]:
        """Strip a session of personal data, in the caller's transaction (its row
        locked, not under hold); returns (recordings shredded, calls cleared).
        Its plaintext recordings (stored before sealing) are added to `plaintext`,
        for `_retire_plaintext` once the transaction commits."""
        from bridge.store import LegalHoldActive

        recordings = await conn.fetch(
            "SELECT r.id, r.sealed, r.storage_path, r.sha256 FROM recordings r JOIN calls c ON c.id = r.call_id"
            " WHERE c.session_id = $1 AND r.shredded_at IS NULL", session_id)
        for recording in recordings:
            await self.shred_recording(recording["id"], conn=conn)
        if plaintext is not None:
            plaintext += [dict(r) for r in recordings if not r["sealed"]]
        cleared = await conn.execute(CLEAR_CALL_DETAILS.format(where="session_id = $1"), session_id)
        await conn.execute("DELETE FROM session_participants WHERE session_id = $1", session_id)
        await conn.execute("DELETE FROM idempotency_keys WHERE session_id = $1", session_id)
        await conn.execute("DELETE FROM webhook_outbox WHERE session_id = $1", session_id)
        done = await conn.fetchval(
            "UPDATE masking_sessions SET participant_a_hash = NULL, participant_b_hash = NULL,"
            " participant_a_sealed = NULL, participant_b_sealed = NULL, key_id = NULL, external_ref = NULL,"
            " webhook_url = NULL, anonymised_at = now()"
            " WHERE id = $1 AND legal_hold_at IS NULL AND anonymised_at IS NULL RETURNING id", session_id)
        if done is None:
            raise LegalHoldActive(f"session {session_id} is under legal hold or already anonymised")
        return len(recordings), int(cleared.split()[-1])

    # -- the purge --------------------------------------------------------------------
    async def purge(self, policy: RetentionPolicy, batch: int = 500, dry_run: bool = False,
                    by: Actor | None = None, webhook_url: str | None = None) -> PurgeReport:
        """Purge everything past its retention, `batch` rows per transaction, until
        none is left; idempotent. `dry_run`: the same work in one transaction
        rolled back at the end (exact counts, nothing changed). `by`: each batch
        that changed anything writes a purge.batch audit row in its own
        transaction (what it purged, by id), and a run that changed anything
        ends with purge.run (the counts). `webhook_url`: where session.expired
        goes for sessions without their own (the expiry that runs first)."""
        report = PurgeReport(dry_run=dry_run)
        if not dry_run:
            await self._purge(policy, batch, by, webhook_url, report,
                              lambda step: self._run(step, timeout=BATCH_SECONDS))
            return report

        async def dry(conn):
            outer = conn.transaction()
            await outer.start()
            try:
                await self._purge(policy, batch, None, webhook_url, report,
                                  lambda step: asyncio.wait_for(step(conn), BATCH_SECONDS))
            finally:
                await outer.rollback()

        await self._run(dry, timeout=DRY_RUN_SECONDS)
        return report

    async def _purge(self, policy: RetentionPolicy, batch: int, by: Actor | None, webhook_url: str | None,
                     report: PurgeReport, run) -> None:
        """The purge's steps, each through `run(step)`: its own pooled transaction,
        or (a dry run) a savepoint of the one transaction that is rolled back."""
        from bridge.store import _expire_due

        async def expire(conn):  # a session past its time has ended, swept or not
            async with conn.transaction():
                return len(await _expire_due(conn, webhook_url, EXPIRE_BATCH))

        while await run(expire) == EXPIRE_BATCH:
            pass
        now = await run(lambda conn: conn.fetchval("SELECT now()"))
        for kind in Kind:
            cutoff = policy.cutoff(kind, now)
            after = None
            while cutoff is not None:
                after, scanned, plaintext = await run(
                    lambda conn: self._purge_batch(conn, kind, policy, now, cutoff, after, batch, report, by))
                if not report.dry_run:
                    await self._retire_plaintext(plaintext)
                if scanned < batch:
                    break
        if by is not None and report.total:
            await run(lambda conn: self.audit_by(by, "purge.run", "retention", now.isoformat(), conn,
                                                 details=report.to_json()["kinds"]))

    async def _purge_batch(self, conn, kind: Kind, policy: RetentionPolicy, now: datetime, cutoff: datetime,
                           after, batch: int, report: PurgeReport,
                           by: Actor | None) -> tuple[Any, int, list[dict]]:
        """One transaction: up to `batch` candidates, each given its verdict, and
        (`by`) the audit row of what it changed. The report counts it once
        committed; returns the last id seen, how many, and the plaintext
        recordings it shredded."""
        async with conn.transaction():
            rows = await conn.fetch(CANDIDATES[kind], cutoff, after, batch)
            if kind is Kind.SESSIONS:
                sessions = {r["id"]: r["held"] for r in rows}
            else:
                ids = list({r["session_id"] for r in rows if r["session_id"] is not None})
                sessions = {r["id"]: r["held"] for r in await conn.fetch(LOCK_SESSIONS, ids)} if ids else {}
            due, held, shredded, cleared, plaintext = [], [], 0, 0, []
            for row in rows:
                if row["session_id"] is not None and row["session_id"] not in sessions:
                    continue  # its session is being changed: the next purge decides
                moment = (session_ended_at(row["status"], row["closed_at"], row["expires_at"], now)
                          if kind is Kind.SESSIONS else row["moment"])
                decision = verdict(policy, kind, moment, sessions.get(row["session_id"], False), now)
                if decision is Verdict.DUE:
                    due.append(row["id"])
                elif decision is Verdict.HELD:
                    held.append(row["session_id"])
            if kind is Kind.SESSIONS:
                for session_id in due:
                    s, c = await self._anonymise_session(conn, session_id, plaintext)
                    shredded, cleared = shredded + s, cleared + c
            elif kind is Kind.RECORDINGS:
                for recording_id in due:
                    await self.shred_recording(recording_id, conn=conn)
                chosen = set(due)
                plaintext = [dict(r) for r in rows if r["id"] in chosen and not r["sealed"]]
            elif kind is Kind.CALL_DETAILS and due:
                await conn.execute(CLEAR_CALL_DETAILS.format(where="id = ANY($1::uuid[])"), due)
            elif kind is Kind.WEBHOOK_EVENTS and due:
                await conn.execute("DELETE FROM webhook_outbox WHERE id = ANY($1::bigint[])", due)
            if by is not None and due:
                details = {"kind": kind.value, "purged": len(due), "held": len(held), "ids": [str(i) for i in due]}
                if kind is Kind.SESSIONS:
                    details |= {"recordings_shredded": shredded, "calls_cleared": cleared}
                await self.audit_by(by, "purge.batch", "retention", now.isoformat(), conn, details=details)
        report.purged[kind] += len(due)
        report.purged[Kind.RECORDINGS] += shredded
        report.purged[Kind.CALL_DETAILS] += cleared
        report.held[kind] += len(held)
        report.held_sessions.update(held)
        report.batches[kind].append(len(due))
        return (rows[-1]["id"] if rows else after), len(rows), plaintext

    # -- legal hold ---------------------------------------------------------------------
    async def set_legal_hold(self, session_id: uuid.UUID, reason: str, by: Actor) -> MaskingSession:
        """Keep the session whole (numbers, calls, recordings) through purge and
        erasure until released; setting it again replaces the reason."""
        from bridge.store import NotFound, SessionAnonymised

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
                await self.audit(by.name, "legal_hold.set", "session", str(session_id), source=by.source,
                                 reason=by.reason or reason, session_id=session_id, conn=conn,
                                 details={"hold_reason": reason})
                return self._session(row)

        return await self._run(hold)

    async def release_legal_hold(self, session_id: uuid.UUID, by: Actor) -> MaskingSession:
        """Lift the hold: retention applies again from the next purge. Idempotent
        (a session not held is returned as it is, and nothing is audited)."""
        from bridge.store import NotFound

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
                    await self.audit_by(by, "legal_hold.released", "session", str(session_id), conn,
                                        session_id=session_id,
                                        details={"hold_reason": before["legal_hold_reason"]})
                return self._session(row)

        return await self._run(release)

    # -- erasure ----------------------------------------------------------------------------
    async def erase_subject(self, number: str, by: Actor, batch: int = 200, request_id: uuid.UUID | None = None,
                            webhook_url: str | None = None) -> ErasureReport:
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
        (the expiry that runs first, in its own transaction)."""
        subject = self.keys.lookup_hash(number)
        if request_id is not None:
            await self.open_request_for(request_id, number, ("erasure",))
        await self._expire_all(webhook_url)
        report = ErasureReport(subject=mask_number(number), request_id=request_id)

        async def erase_batch(conn, after):
            async with conn.transaction():
                if request_id is not None:  # the row lock before any other, as closing a request takes them
                    await self.lock_open_request(conn, request_id, subject, ("erasure",))
                rows = await conn.fetch(
                    "SELECT s.id, s.status, s.expires_at > now() AS unexpired, s.legal_hold_at IS NOT NULL AS held,"
                    " s.legal_hold_reason, EXISTS (SELECT 1 FROM calls c WHERE c.session_id = s.id"
                    "   AND c.disposition = 'in_progress') AS call_in_progress"
                    " FROM masking_sessions s WHERE (s.participant_a_hash = $1 OR s.participant_b_hash = $1)"
                    " AND ($2::uuid IS NULL OR s.id > $2) ORDER BY s.id LIMIT $3 FOR UPDATE OF s",
                    subject, after, batch)
                plan = plan_erasure([SessionToErase(
                    r["id"], live=r["status"] == "active" and r["unexpired"], held=r["held"],
                    call_in_progress=r["call_in_progress"], hold_reason=r["legal_hold_reason"]) for r in rows])
                for session_id in plan.close_first:
                    await conn.execute("UPDATE masking_sessions SET status = 'closed', closed_at = now()"
                                       " WHERE id = $1", session_id)
                shredded, cleared, plaintext = 0, 0, []
                for session_id in plan.erase:
                    s, c = await self._anonymise_session(conn, session_id, plaintext)
                    shredded, cleared = shredded + s, cleared + c
                last = len(rows) < batch
                if plan.erase and not last:  # the last batch's sessions are in subject.erased
                    await self.audit_by(
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
                    entry = await self.audit_by(
                        by, "subject.erased", "subject", report.subject, conn, subject_hash=subject,
                        details={k: v for k, v in done.to_json().items() if k not in ("subject", "audit_seq")})
                    done.audit_seq = entry.seq
                    if request_id is not None:
                        await self.complete_subject_request(
                            request_id, by, conn=conn,
                            details={"sessions_erased": len(done.sessions_erased), "kept": len(done.kept)})
                return done, (rows[-1]["id"] if rows else after), len(rows), plaintext

        after, scanned = None, batch
        while scanned == batch:
            report, after, scanned, plaintext = await self._run(lambda conn: erase_batch(conn, after),
                                                                timeout=BATCH_SECONDS)
            await self._retire_plaintext(plaintext)
        return report

    async def _retire_plaintext(self, recordings: list[dict]) -> None:
        """Plaintext recordings (stored before sealing) a committed batch shredded:
        their files go now, not at the next sealing pass, the way that pass does it
        (sealed under a key that is not kept, then the plaintext removed)."""
        from bridge.recordings.backfill import retire_shredded

        for row in recordings:
            await retire_shredded(self, {**row, "shredded_at": datetime.now(timezone.utc)})

    async def _expire_all(self, webhook_url: str | None) -> None:
        """Expire every session past its time, 500 a transaction, as the service's
        timer does (session.expired to `webhook_url` when a session has none)."""
        from bridge.store import _expire_due

        async def expire(conn):
            async with conn.transaction():
                return len(await _expire_due(conn, webhook_url, EXPIRE_BATCH))

        while await self._run(expire, timeout=BATCH_SECONDS) == EXPIRE_BATCH:
            pass
