"""Data breach incidents' SQL (`incidents`, `incident_subjects`): open, scope
from the audit trail, assess, record notifications, close; every change
audited in its own transaction (bridge/privacy/breach.py decides, this stores).

Scoping reads the ledger: the rows an actor wrote in a time range that name a
person (`subject_hash`) or a session (both its participants, from
`session_participants`). The affected individuals are kept as keyed hashes;
`contacts` opens their numbers in memory only, for an encrypted file.
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from bridge.privacy.audit import Actor
from bridge.privacy.breach import (Incident, IncidentStateError, assessment_due, check_scope, clean_text,
                                   closing_problems, notifiable, pdpc_due, require_open)
from bridge.store.audit import AuditTrail
from bridge.store.db import Database
from bridge.store.errors import NotFound
from bridge.store.rows import session_from_row

# The ledger rows of `actor` (or of any actor named `actor:...`, e.g. every key
# of one prefix) in [since, until) that reveal or touch someone's data.
SCOPE_ROWS = ("SELECT action, subject_hash, session_id FROM audit_log WHERE at >= $2 AND at < $3"
              " AND (actor = $1 OR starts_with(actor, $1 || ':'))"
              " AND (subject_hash IS NOT NULL OR session_id IS NOT NULL)")


class Incidents:
    """`store.incidents`."""

    def __init__(self, db: Database, audit: AuditTrail):
        self.db, self.audit = db, audit

    async def open(self, title: str, aware_at: datetime, by: Actor, notes: str | None = None) -> Incident:
        incident_id = uuid.uuid4()

        async def insert(conn):
            async with conn.transaction():
                row = await conn.fetchrow(
                    "INSERT INTO incidents (id, title, aware_at, assess_due_at, opened_by, notes)"
                    " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *", incident_id, clean_text(title, 200) or "-",
                    aware_at, assessment_due(aware_at), by.name, clean_text(notes))
                await self.audit.append_by(by, "incident.opened", "incident", str(incident_id), conn,
                                           details={"aware_at": aware_at.isoformat(),
                                                    "assess_due_at": row["assess_due_at"].isoformat()})
                return _incident(row)

        return await self.db.run(insert)

    async def get(self, incident_id: uuid.UUID) -> Incident:
        row = await self.db.run(lambda conn: conn.fetchrow("SELECT * FROM incidents WHERE id = $1", incident_id))
        if row is None:
            raise NotFound("no such incident")
        return _incident(row)

    async def scope(self, incident_id: uuid.UUID, actor: str, since: datetime, until: datetime,
                    by: Actor) -> tuple[Incident, dict[str, int]]:
        """Scope the incident to `actor`'s rows in [since, until): the affected
        individuals replace any earlier scope's. Returns the incident and the
        rows in scope by action."""
        check_scope(since, until)

        async def run(conn):
            async with conn.transaction():
                incident = await _locked(conn, incident_id)
                require_open(incident)
                actions = await _actions(conn, actor, since, until)
                hashes = await conn.fetch(
                    f"WITH rows AS ({SCOPE_ROWS}) SELECT subject_hash AS h FROM rows WHERE subject_hash IS NOT NULL"
                    " UNION SELECT p.number_hash FROM session_participants p"
                    " WHERE p.session_id IN (SELECT session_id FROM rows) AND p.number_hash IS NOT NULL",
                    actor, since, until)
                await conn.execute("DELETE FROM incident_subjects WHERE incident_id = $1", incident_id)
                await conn.executemany("INSERT INTO incident_subjects VALUES ($1, $2)",
                                       [(incident_id, r["h"]) for r in hashes])
                row = await conn.fetchrow(
                    "UPDATE incidents SET scope_actor = $2, scope_from = $3, scope_until = $4, scoped_at = now(),"
                    " affected = $5, affected_source = 'ledger' WHERE id = $1 RETURNING *",
                    incident_id, actor, since, until, len(hashes))
                await self.audit.append_by(by, "incident.scoped", "incident", str(incident_id), conn,
                                           details={"actor": actor, "from": since.isoformat(),
                                                    "until": until.isoformat(), "affected": len(hashes),
                                                    "rows": actions})
                return _incident(row), actions

        return await self.db.run(run)

    async def actions_in_scope(self, incident: Incident) -> dict[str, int]:
        if incident.scope_actor is None:
            return {}
        return await self.db.run(lambda conn: _actions(conn, incident.scope_actor, incident.scope_from,
                                                       incident.scope_until))

    async def assess(self, incident_id: uuid.UUID, significant_harm: bool, assessed_at: datetime, by: Actor,
                     affected: int | None = None, notes: str | None = None) -> Incident:
        """Record the assessment: notifiable if significant harm or 500 or more
        affected (`affected` overrides the ledger's count: a breach beyond the bridge)."""

        async def run(conn):
            async with conn.transaction():
                incident = await _locked(conn, incident_id)
                require_open(incident)
                if incident.assessed_at is not None:
                    raise IncidentStateError("the incident is already assessed")
                if assessed_at < incident.aware_at:
                    raise IncidentStateError("an assessment cannot come before the organisation became aware")
                count = affected if affected is not None else incident.affected
                if count is None:
                    raise IncidentStateError("nobody is counted yet: scope it (`masking incident scope`)"
                                             " or give --affected")
                decided = notifiable(count, significant_harm)
                row = await conn.fetchrow(
                    "UPDATE incidents SET status = 'assessed', assessed_at = $2, assessed_by = $3,"
                    " significant_harm = $4, notifiable = $5, pdpc_due_at = $6, affected = $7,"
                    " affected_source = CASE WHEN $8 THEN 'operator' ELSE affected_source END,"
                    " notes = coalesce($9, notes) WHERE id = $1 RETURNING *",
                    incident_id, assessed_at, by.name, significant_harm, decided,
                    pdpc_due(assessed_at) if decided else None, count, affected is not None, clean_text(notes))
                await self.audit.append_by(by, "incident.assessed", "incident", str(incident_id), conn, details={
                    "affected": count, "significant_harm": significant_harm, "notifiable": decided,
                    "pdpc_due_at": row["pdpc_due_at"].isoformat() if decided else None})
                return _incident(row)

        return await self.db.run(run)

    async def notified(self, incident_id: uuid.UUID, by: Actor, pdpc_at: datetime | None = None,
                       reference: str | None = None, individuals_at: datetime | None = None,
                       exemption: str | None = None) -> Incident:
        """Record the PDPC notified (with its reference), the individuals notified, or why they need not be."""

        async def run(conn):
            async with conn.transaction():
                incident = await _locked(conn, incident_id)
                require_open(incident)
                if incident.assessed_at is None:
                    raise IncidentStateError("assess the incident first (`masking incident assess`)")
                row = await conn.fetchrow(
                    "UPDATE incidents SET pdpc_notified_at = coalesce($2, pdpc_notified_at),"
                    " pdpc_reference = coalesce($3, pdpc_reference),"
                    " individuals_notified_at = coalesce($4, individuals_notified_at),"
                    " individuals_exemption = coalesce($5, individuals_exemption) WHERE id = $1 RETURNING *",
                    incident_id, pdpc_at, clean_text(reference, 100), individuals_at, clean_text(exemption))
                details = {"pdpc_notified_at": _iso(pdpc_at), "pdpc_reference": clean_text(reference, 100),
                           "individuals_notified_at": _iso(individuals_at), "exemption": clean_text(exemption)}
                await self.audit.append_by(by, "incident.notified", "incident", str(incident_id), conn,
                                           details={k: v for k, v in details.items() if v is not None})
                return _incident(row)

        return await self.db.run(run)

    async def close(self, incident_id: uuid.UUID, decision: str, by: Actor) -> Incident:
        """Close with the decision recorded; IncidentStateError naming what is outstanding."""

        async def run(conn):
            async with conn.transaction():
                incident = await _locked(conn, incident_id)
                problems = closing_problems(incident)
                if problems:
                    raise IncidentStateError("cannot close: " + "; ".join(problems))
                row = await conn.fetchrow(
                    "UPDATE incidents SET status = 'closed', closed_at = now(), closed_by = $2, decision = $3"
                    " WHERE id = $1 RETURNING *", incident_id, by.name, clean_text(decision))
                await self.audit.append_by(by, "incident.closed", "incident", str(incident_id), conn, details={
                    "decision": row["decision"], "notifiable": row["notifiable"],
                    "overdue": [c for c in incident.overdue_clocks(row["closed_at"])]})
                return _incident(row)

        return await self.db.run(run)

    async def list(self, status: str | None = None, overdue: bool = False, limit: int = 100) -> list[Incident]:
        """Incidents by their assessment deadline, soonest first; `overdue`: a clock past its due time."""
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT * FROM incidents WHERE ($1::text IS NULL OR status = $1) AND (NOT $2 OR (status <> 'closed' AND"
            " ((assessed_at IS NULL AND assess_due_at < now())"
            " OR (notifiable AND pdpc_notified_at IS NULL AND pdpc_due_at < now()))))"
            " ORDER BY assess_due_at, id LIMIT $3", status, overdue, limit))
        return [_incident(r) for r in rows]

    async def contacts(self, incident_id: uuid.UUID, by: Actor, details: dict[str, Any]) -> tuple[list[str], int]:
        """The affected individuals' numbers, opened in memory (the caller
        encrypts them), and how many have none left (anonymised meanwhile).
        Audited before they are returned, with the counts and `details`, never a number."""
        incident = await self.get(incident_id)
        require_open(incident)
        hashes = [r["subject_hash"] for r in await self.db.run(lambda conn: conn.fetch(
            "SELECT subject_hash FROM incident_subjects WHERE incident_id = $1 ORDER BY subject_hash", incident_id))]
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT DISTINCT ON (p.number_hash) p.number_hash, p.role, s.* FROM session_participants p"
            " JOIN masking_sessions s ON s.id = p.session_id WHERE p.number_hash = ANY($1)"
            " AND s.anonymised_at IS NULL ORDER BY p.number_hash, s.created_at DESC", hashes))
        numbers = []
        for row in rows:
            session = session_from_row(self.db.keys, row)
            number = session.participant_a if row["role"] == "a" else session.participant_b
            if number:
                numbers.append(number)
        await self.audit.append_by(by, "incident.contacts.exported", "incident", str(incident_id), details={
            **details, "contacts": len(numbers), "unreachable": len(hashes) - len(numbers)})
        return sorted(numbers), len(hashes) - len(numbers)

    async def overdue_counts(self) -> dict[str, int]:
        """Overdue privacy clocks by name (the metric): subject requests past due,
        incidents unassessed past 30 days, PDPC notifications past 3 days."""
        row = await self.db.run(lambda conn: conn.fetchrow(
            "SELECT (SELECT count(*) FROM subject_requests WHERE status = 'open' AND due_at < now()) AS requests,"
            " count(*) FILTER (WHERE assessed_at IS NULL AND assess_due_at < now()) AS assessment,"
            " count(*) FILTER (WHERE notifiable AND pdpc_notified_at IS NULL AND pdpc_due_at < now()) AS pdpc"
            " FROM incidents WHERE status <> 'closed'"))
        return {"subject_request": row["requests"], "incident_assessment": row["assessment"],
                "incident_pdpc_notification": row["pdpc"]}


async def _locked(conn: asyncpg.Connection, incident_id: uuid.UUID) -> Incident:
    row = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1 FOR UPDATE", incident_id)
    if row is None:
        raise NotFound("no such incident")
    return _incident(row)


async def _actions(conn: asyncpg.Connection, actor: str, since: datetime, until: datetime) -> dict[str, int]:
    rows = await conn.fetch(f"SELECT action, count(*) AS n FROM ({SCOPE_ROWS}) AS rows GROUP BY action",
                            actor, since, until)
    return {r["action"]: r["n"] for r in rows}


def _incident(row: asyncpg.Record) -> Incident:
    return Incident(**{name: row[name] for name in Incident.__dataclass_fields__})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
