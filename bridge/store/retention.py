"""Retention's SQL: anonymising a session, and the purge's batches.

One primitive, `anonymise_session`, serves both the purge (a session past its
retention) and erasure (a subject's sessions, bridge/store/erasure.py): numbers nulled, participants
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
from datetime import datetime
from typing import Any, Awaitable, Callable

import asyncpg

from bridge.privacy.audit import Actor
from bridge.privacy.retention import PER_PURPOSE, Kind, RetentionPolicy, Verdict, session_ended_at, verdict
from bridge.store.audit import AuditTrail
from bridge.store.db import Database
from bridge.store.errors import LegalHoldActive, RotationInProgress
from bridge.store.expiry import expire_due_in
from bridge.store.lookup_keys import rotation_pending
from bridge.store.preservation import HELD
from bridge.store.recordings import shred_in

# Long enough for a batch of shreds and cascades; each statement keeps the pool's own timeout.
BATCH_SECONDS = 60.0
EXPIRE_BATCH = 500
# A dry run is one transaction holding its rows' locks to the end: bounded as a whole too.
DRY_RUN_SECONDS = 1800.0

# A row's own cutoff: its session's purpose's ($5: purposes declaring a period
# of this kind, $6: their cutoffs), else the global one ($4; NULL: never).
PURPOSE_CUTOFF = ("coalesce((SELECT d.cutoff FROM unnest($5::text[], $6::timestamptz[]) AS d(purpose, cutoff)"
                  " WHERE d.purpose = {purpose}), $4::timestamptz)")
# Per kind: the candidates past the cutoff ($1: for sessions and recordings the
# latest any purpose has, then each row's own) after the last id seen ($2), with
# their retention moment and their session; then the change. A session is
# judged (held or not: a legal hold, or the preservation hold of its subjects'
# requests, bridge/store/preservation.py) from its row: a session is locked as it is decided,
# FOR UPDATE (sessions) or FOR SHARE (the rest, `LOCK_SESSIONS`), so a hold
# committing meanwhile is seen, or waits for the batch.
CANDIDATES = {
    Kind.SESSIONS: (
        f"SELECT id, id AS session_id, status, closed_at, expires_at, {HELD} AS held, purpose"
        " FROM masking_sessions s"
        " WHERE anonymised_at IS NULL AND status <> 'active' AND coalesce(closed_at, expires_at) < $1"
        " AND coalesce(closed_at, expires_at) < " + PURPOSE_CUTOFF.format(purpose="s.purpose") +
        " AND ($2::uuid IS NULL OR id > $2)"
        " AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.session_id = s.id AND c.disposition = 'in_progress')"
        " ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED"),
    Kind.RECORDINGS: (
        "SELECT r.id, r.created_at AS moment, c.session_id, r.sealed, r.storage_path, r.sha256, s.purpose"
        " FROM recordings r JOIN calls c ON c.id = r.call_id LEFT JOIN masking_sessions s ON s.id = c.session_id"
        " WHERE r.shredded_at IS NULL AND r.created_at < $1 AND ($2::uuid IS NULL OR r.id > $2)"
        " AND r.created_at < " + PURPOSE_CUTOFF.format(purpose="s.purpose") +
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
    f"SELECT id, {HELD} AS held FROM masking_sessions s WHERE id = ANY($1::uuid[])"
    " ORDER BY id FOR SHARE SKIP LOCKED")
# Plaintext recordings (stored before sealing) that a committed batch shredded
# go at once, not at the next sealing pass: a file is the recordings domain's
# to remove (bridge/recordings/backfill.py, `plaintext_retirer`), so the caller
# passes it in; without one, the sealing pass removes them at the next start.
RetirePlaintext = Callable[[list[dict]], Awaitable[None]]
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


class Retention:
    """`store.retention`."""

    def __init__(self, db: Database, audit: AuditTrail):
        self.db, self.audit = db, audit

    async def anonymise_session(self, conn: asyncpg.Connection, session_id: uuid.UUID,
                                 plaintext: list[dict] | None = None) -> tuple[int, int]:
        """Strip a session of personal data, in the caller's transaction (its row
        locked, not under hold); returns (recordings shredded, calls cleared).
        Its plaintext recordings (stored before sealing) are added to `plaintext`,
        for the caller's `retire` once the transaction commits."""
        recordings = await conn.fetch(
            "SELECT r.id, r.sealed, r.storage_path, r.sha256 FROM recordings r JOIN calls c ON c.id = r.call_id"
            " WHERE c.session_id = $1 AND r.shredded_at IS NULL", session_id)
        for recording in recordings:
            await shred_in(conn, recording["id"])
        if plaintext is not None:
            plaintext += [dict(r) for r in recordings if not r["sealed"]]
        cleared = await conn.execute(CLEAR_CALL_DETAILS.format(where="session_id = $1"), session_id)
        await conn.execute("DELETE FROM session_participants WHERE session_id = $1", session_id)
        await conn.execute("DELETE FROM idempotency_keys WHERE session_id = $1", session_id)
        await conn.execute("DELETE FROM webhook_outbox WHERE session_id = $1", session_id)
        done = await conn.fetchval(
            "UPDATE masking_sessions SET participant_a_hash = NULL, participant_b_hash = NULL, lookup_key_id = NULL,"
            " participant_a_sealed = NULL, participant_b_sealed = NULL, key_id = NULL, external_ref = NULL,"
            " webhook_url = NULL, anonymised_at = now()"
            " WHERE id = $1 AND legal_hold_at IS NULL AND anonymised_at IS NULL RETURNING id", session_id)
        if done is None:
            raise LegalHoldActive(f"session {session_id} is under legal hold or already anonymised")
        return len(recordings), int(cleared.split()[-1])
    # -- the purge --------------------------------------------------------------------
    async def purge(self, policy: RetentionPolicy, batch: int = 500, dry_run: bool = False,
                    by: Actor | None = None, webhook_url: str | None = None,
                    retire: RetirePlaintext | None = None) -> PurgeReport:
        """Purge everything past its retention, `batch` rows per transaction, until
        none is left; idempotent. `dry_run`: the same work in one transaction
        rolled back at the end (exact counts, nothing changed). `by`: each batch
        that changed anything writes a purge.batch audit row in its own
        transaction (what it purged, by id), and a run that changed anything
        ends with purge.run (the counts). `webhook_url`: where session.expired
        goes for sessions without their own (the expiry that runs first).
        `retire`: what becomes of the plaintext files a committed batch shredded."""
        if await rotation_pending(self.db):
            raise RotationInProgress("a lookup-key rotation is in progress: run `masking keys rehash` to its end first")
        report = PurgeReport(dry_run=dry_run)
        if not dry_run:
            await self._purge(policy, batch, by, webhook_url, report,
                              lambda step: self.db.run(step, timeout=BATCH_SECONDS), retire)
            return report

        async def dry(conn):
            outer = conn.transaction()
            await outer.start()
            try:
                await self._purge(policy, batch, None, webhook_url, report,
                                  lambda step: asyncio.wait_for(step(conn), BATCH_SECONDS), None)
            finally:
                await outer.rollback()

        await self.db.run(dry, timeout=DRY_RUN_SECONDS)
        return report

    async def _purge(self, policy: RetentionPolicy, batch: int, by: Actor | None, webhook_url: str | None,
                     report: PurgeReport, run, retire: RetirePlaintext | None) -> None:
        """The purge's steps, each through `run(step)`: its own pooled transaction,
        or (a dry run) a savepoint of the one transaction that is rolled back."""
        async def expire(conn):  # a session past its time has ended, swept or not
            async with conn.transaction():
                return len(await expire_due_in(conn, webhook_url, EXPIRE_BATCH))

        while await run(expire) == EXPIRE_BATCH:
            pass
        now = await run(lambda conn: conn.fetchval("SELECT now()"))
        for kind in Kind:
            cutoff = policy.latest_cutoff(kind, now)
            after = None
            while cutoff is not None:
                after, scanned, plaintext = await run(
                    lambda conn: self._purge_batch(conn, kind, policy, now, cutoff, after, batch, report, by))
                if retire is not None and plaintext:
                    await retire(plaintext)
                if scanned < batch:
                    break
        if by is not None and report.total:
            await run(lambda conn: self.audit.append_by(by, "purge.run", "retention", now.isoformat(), conn,
                                                 details=report.to_json()["kinds"]))

    async def _purge_batch(self, conn, kind: Kind, policy: RetentionPolicy, now: datetime, cutoff: datetime,
                           after, batch: int, report: PurgeReport,
                           by: Actor | None) -> tuple[Any, int, list[dict]]:
        """One transaction: up to `batch` candidates, each given its verdict, and
        (`by`) the audit row of what it changed. The report counts it once
        committed; returns the last id seen, how many, and the plaintext
        recordings it shredded."""
        async with conn.transaction():
            own = policy.purpose_cutoffs(kind, now) if kind in PER_PURPOSE else None
            rows = await conn.fetch(CANDIDATES[kind], cutoff, after, batch, *(
                () if own is None else (policy.cutoff(kind, now), list(own), list(own.values()))))
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
                decision = verdict(policy, kind, moment, sessions.get(row["session_id"], False), now,
                                   row["purpose"] if kind in PER_PURPOSE else None)
                if decision is Verdict.DUE:
                    due.append(row["id"])
                elif decision is Verdict.HELD:
                    held.append(row["session_id"])
            if kind is Kind.SESSIONS:
                for session_id in due:
                    s, c = await self.anonymise_session(conn, session_id, plaintext)
                    shredded, cleared = shredded + s, cleared + c
            elif kind is Kind.RECORDINGS:
                for recording_id in due:
                    await shred_in(conn, recording_id)
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
                await self.audit.append_by(by, "purge.batch", "retention", now.isoformat(), conn, details=details)
        report.purged[kind] += len(due)
        report.purged[Kind.RECORDINGS] += shredded
        report.purged[Kind.CALL_DETAILS] += cleared
        report.held[kind] += len(held)
        report.held_sessions.update(held)
        report.batches[kind].append(len(due))
        return (rows[-1]["id"] if rows else after), len(rows), plaintext
