"""Data breaches under PDPA Part 6A (s26A-E), as pure data: an incident's
clocks, whether it is notifiable, and the draft notification to the PDPC.

The Act's clocks, as this module counts them:
- assessment (s26C(2)): whether a suspected breach is notifiable is assessed
  "in a reasonable and expeditious manner"; the PDPC's guidance asks for it
  within 30 calendar days of becoming aware, the deadline tracked here;
- the PDPC (s26D(1)): notified as soon as practicable, and no later than 3
  calendar days after the day the organisation assessed the breach
  notifiable, counted in Singapore's calendar (UTC+8, no daylight saving):
  the deadline is the end of the third day after the assessment's day;
- affected individuals (s26D(2)): on or after notifying the PDPC, as soon as
  practicable, unless an exception applies (s26D(5)-(7): remedial action
  taken, technological protection, or the PDPC's direction), which is recorded.

A breach is notifiable (s26B) when it results, or is likely to result, in
significant harm to an affected individual (an operator's judgement, recorded
at assessment: the bridge cannot know what harm a leaked number does), or is
of significant scale: 500 or more affected individuals (PDPA regulations).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from bridge.numbering import redact_text

SIGNIFICANT_SCALE = 500
ASSESSMENT_DAYS = 30
PDPC_DAYS = 3
SINGAPORE = timezone(timedelta(hours=8), "SGT")
STATUSES = ("open", "assessed", "closed")
CLOCKS = ("incident_assessment", "incident_pdpc_notification")
MAX_TEXT = 2000

# Data categories a ledger row's action shows was revealed (for the draft).
CATEGORIES = {"session.read": "participants' phone numbers (session records)",
              "number.revealed": "participants' phone numbers (session records)",
              "recording.read": "call recordings (the participants' voices)",
              "console.recording.played": "call recordings (the participants' voices)",
              "subject.exported": "a data subject's export (calls, sessions, recordings' metadata)",
              "session.created": "participants' phone numbers (session records)"}


class IncidentStateError(Exception):
    """The incident is not in a state to do that (closed, not assessed, notification outstanding)."""


@dataclass(frozen=True)
class Clock:
    name: str  # one of CLOCKS
    due_at: datetime
    done_at: datetime | None

    def overdue(self, now: datetime) -> bool:
        return self.done_at is None and now > self.due_at


@dataclass(frozen=True)
class Incident:
    id: uuid.UUID
    title: str
    aware_at: datetime
    assess_due_at: datetime
    status: str
    opened_by: str
    scope_actor: str | None = None
    scope_from: datetime | None = None
    scope_until: datetime | None = None
    scoped_at: datetime | None = None
    affected: int | None = None
    affected_source: str | None = None  # ledger | operator
    assessed_at: datetime | None = None
    assessed_by: str | None = None
    significant_harm: bool | None = None
    notifiable: bool | None = None
    pdpc_due_at: datetime | None = None
    pdpc_notified_at: datetime | None = None
    pdpc_reference: str | None = None
    individuals_notified_at: datetime | None = None
    individuals_exemption: str | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    decision: str | None = None
    notes: str | None = None

    def clocks(self) -> list[Clock]:
        clocks = [Clock("incident_assessment", self.assess_due_at, self.assessed_at)]
        if self.notifiable and self.pdpc_due_at is not None:
            clocks.append(Clock("incident_pdpc_notification", self.pdpc_due_at, self.pdpc_notified_at))
        return clocks

    def overdue_clocks(self, now: datetime) -> list[str]:
        if self.status == "closed":
            return []
        return [c.name for c in self.clocks() if c.overdue(now)]

    def individuals_pending(self) -> bool:
        """Notifiable, and the affected individuals neither told nor exempted."""
        return bool(self.notifiable) and self.individuals_notified_at is None and not self.individuals_exemption

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {"id": str(self.id), "title": self.title, "status": self.status, "opened_by": self.opened_by,
                "aware_at": _iso(self.aware_at), "assess_due_at": _iso(self.assess_due_at),
                "scope": {"actor": self.scope_actor, "from": _iso(self.scope_from), "until": _iso(self.scope_until),
                          "scoped_at": _iso(self.scoped_at)},
                "affected": self.affected, "affected_source": self.affected_source,
                "significant_scale": None if self.affected is None else self.affected >= SIGNIFICANT_SCALE,
                "assessed_at": _iso(self.assessed_at), "assessed_by": self.assessed_by,
                "significant_harm": self.significant_harm, "notifiable": self.notifiable,
                "pdpc_due_at": _iso(self.pdpc_due_at), "pdpc_notified_at": _iso(self.pdpc_notified_at),
                "pdpc_reference": self.pdpc_reference, "individuals_notified_at": _iso(self.individuals_notified_at),
                "individuals_exemption": self.individuals_exemption, "individuals_pending": self.individuals_pending(),
                "closed_at": _iso(self.closed_at), "closed_by": self.closed_by, "decision": self.decision,
                "notes": self.notes, "overdue": self.overdue_clocks(now)}


def assessment_due(aware_at: datetime) -> datetime:
    """When a breach the organisation became aware of at `aware_at` must be assessed by."""
    return aware_at + timedelta(days=ASSESSMENT_DAYS)


def pdpc_due(assessed_at: datetime) -> datetime:
    """The end of the 3rd calendar day (Singapore) after the day of the assessment."""
    day: date = assessed_at.astimezone(SINGAPORE).date() + timedelta(days=PDPC_DAYS + 1)
    return datetime.combine(day, time(), SINGAPORE)


def significant_scale(affected: int) -> bool:
    return affected >= SIGNIFICANT_SCALE


def notifiable(affected: int, significant_harm: bool) -> bool:
    """s26B: significant harm (the operator's judgement) or significant scale (500 or more)."""
    if affected < 0:
        raise ValueError("the number of affected individuals cannot be negative")
    return significant_harm or significant_scale(affected)


def check_scope(since: datetime, until: datetime) -> None:
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("the scope's times must carry a UTC offset")
    if until <= since:
        raise ValueError("the scope must end after it starts")


def require_open(incident: Incident) -> None:
    if incident.status == "closed":
        raise IncidentStateError("the incident is closed")


def closing_problems(incident: Incident) -> list[str]:
    """What still stands between the incident and its closing (empty: it may close)."""
    if incident.status == "closed":
        return ["the incident is already closed"]
    problems = []
    if incident.assessed_at is None:
        problems.append("it is not assessed (`masking incident assess`)")
    if incident.notifiable and incident.pdpc_notified_at is None:
        problems.append("it is notifiable and the PDPC is not recorded as notified"
                        " (`masking incident notified --pdpc`)")
    if incident.individuals_pending():
        problems.append("the affected individuals are neither notified nor exempted"
                        " (`masking incident notified --individuals` or `--exemption`)")
    return problems


def clean_text(raw: str | None, limit: int = MAX_TEXT) -> str | None:
    """Free text as it may be stored: printable, any phone number masked."""
    if raw is None:
        return None
    text = redact_text("".join(c if c.isprintable() else " " for c in raw).strip())
    return text[:limit].rstrip() or None


def draft_notification(incident: Incident, actions: dict[str, int], now: datetime) -> str:
    """The PDPC notification's draft, as markdown, from what the bridge knows;
    what only the organisation knows is left as `[to complete: ...]`. Holds
    counts, times, actors and masked text only: never a number."""
    affected = "unknown (not scoped)" if incident.affected is None else str(incident.affected)
    scale = "" if incident.affected is None else (
        " (significant scale: 500 or more)" if significant_scale(incident.affected) else " (under 500)")
    categories = sorted({CATEGORIES.get(a, f"records reached by `{a}`") for a in actions}) or [
        "[to complete: the personal data involved]"]
    harm = {None: "[not yet assessed]", True: "yes (the organisation's assessment)",
            False: "no (the organisation's assessment)"}[incident.significant_harm]
    lines = [
        f"# Draft: data breach notification to the PDPC ({incident.id})",
        "",
        f"_Drafted {_iso(now)} by the masking bridge from its audit trail. Review every line; submit through the"
        " PDPC's data breach notification form. This draft holds no phone number._",
        "",
        "## 1. The organisation",
        "- Organisation name, UEN, address: [to complete]",
        "- Data protection officer (name, contact): [to complete]",
        "- Whether it acts as a data intermediary for another organisation, and which: [to complete]",
        "",
        "## 2. The breach",
        f"- Summary: {incident.title}",
        f"- Became aware: {_sg(incident.aware_at)}",
        f"- Assessed notifiable: {_sg(incident.assessed_at)}",
        f"- Notification due by: {_sg(incident.pdpc_due_at)}",
        f"- Period in scope: {_sg(incident.scope_from)} to {_sg(incident.scope_until)}",
        f"- Actor in scope: {incident.scope_actor or '[not scoped]'}",
        "- How the breach was discovered, and its cause: [to complete]",
        "",
        "## 3. The personal data and the individuals affected",
        f"- Affected individuals: {affected}{scale}; counted as {incident.affected_source or '-'}",
        f"- Significant harm likely: {harm}",
        "- Personal data involved: " + "; ".join(categories),
        "- Ledger rows in scope, by action: " + (", ".join(f"{a}: {n}" for a, n in sorted(actions.items())) or "none"),
        "",
        "## 4. Actions taken",
        "- Containment (keys revoked, access removed): [to complete]",
        "- Remedial actions to reduce harm: [to complete]",
        "- Notifying the affected individuals: "
        + ("done " + _sg(incident.individuals_notified_at) if incident.individuals_notified_at
           else f"not required: {incident.individuals_exemption}" if incident.individuals_exemption
           else "planned on or after this notification (encrypted contact list: `masking incident contacts`)"),
        "",
        "## 5. Notes",
        incident.notes or "-",
        "",
    ]
    return redact_text("\n".join(lines))


def _sg(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(SINGAPORE).strftime("%Y-%m-%d %H:%M SGT")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
