"""`masking compliance report`, as pure data: pass or fail for each setting that
can silently defeat the PDPA mapping (docs/compliance.md), and the exhibit an
assessor reads (the checks, the audit trail's last checkpoint, open and
overdue requests and incidents, the purposes and retention in force).

The checks read settings only; the facts (checkpoint, requests, incidents)
are gathered by the command and passed in, so the whole report is a function
of data in, data out.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from bridge.config import Settings, parse_days, weak_secrets

MAX_REQUEST_DAYS = 30  # PDPA: access and correction requests answered within 30 days
MAX_CHECKPOINT_AGE = timedelta(days=1)
RETENTION = (("recordings", "MASKING_RETAIN_RECORDINGS_DAYS", "retain_recordings_days"),
             ("call_details", "MASKING_RETAIN_CALL_DETAILS_DAYS", "retain_call_details_days"),
             ("sessions", "MASKING_RETAIN_SESSIONS_DAYS", "retain_sessions_days"))


@dataclass(frozen=True)
class Purpose:
    code: str
    records: bool | None  # whether the purpose asks for recording; None: not declared
    source: str


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    setting: str  # the variable(s) to change
    detail: str  # why it matters, or what was found; never a secret or a URL


@dataclass(frozen=True)
class Facts:
    """What the command read from the store and the checkpoint file."""

    now: datetime
    checkpoint_at: datetime | None  # the newest audit checkpoint (None: none, or unreadable)
    checkpoint_problem: str | None = None
    open_requests: tuple[dict, ...] = ()  # SubjectRequest.to_json of each open request
    open_incidents: tuple[dict, ...] = ()  # Incident.to_json of each incident not closed


def purposes_in_force(settings: Settings) -> list[Purpose]:
    """The purposes sessions may name. The one place the report reads them:
    today MASKING_PURPOSES (codes only: none declares whether it records)."""
    return [Purpose(code, None, "MASKING_PURPOSES") for code in sorted(settings.allowed_purposes)]


def setting_checks(settings: Settings) -> list[Check]:
    """Each risky setting, pass or fail."""
    purposes = purposes_in_force(settings)
    checks = [
        Check("request_deadline", settings.subject_request_days <= MAX_REQUEST_DAYS, "MASKING_SUBJECT_REQUEST_DAYS",
              f"{settings.subject_request_days} days to answer a request (PDPA: at most {MAX_REQUEST_DAYS})"),
    ]
    for kind, name, attribute in RETENTION:
        days = parse_days(getattr(settings, attribute))
        checks.append(Check(f"retention_{kind}", days is not None, name,
                            "kept until erased (never purged)" if days is None else f"{days} days"))
    checks += [
        Check("purposes_registered", bool(purposes), "MASKING_PURPOSES",
              f"{len(purposes)} purpose(s)" if purposes else "unset: any well-formed purpose code is accepted"),
        Check("recording_has_purpose", not settings.record_by_default or any(p.records for p in purposes),
              "MASKING_RECORD_BY_DEFAULT",
              "sessions record only when asked" if not settings.record_by_default
              else "recording is on by default and no purpose in force declares that it records"),
        Check("opt_out_offered", settings.notice.opt_out_digit != "", "MASKING_NOTICE_OPT_OUT_DIGIT",
              "the recording notice offers an opt-out digit" if settings.notice.opt_out_digit
              else "empty: a party hearing the recording notice cannot decline"),
    ]
    for check, name, url in (("webhook_https", "MASKING_WEBHOOK_URL", settings.webhook_url),
                             ("out_of_session_https", "MASKING_OUT_OF_SESSION_URL", settings.out_of_session_url),
                             ("checkpoint_url_https", "MASKING_AUDIT_CHECKPOINT_URL", settings.audit_checkpoint_url)):
        scheme = urlsplit(url).scheme if url else ""
        checks.append(Check(check, scheme in ("", "https"), name,
                            "unset" if not url else f"{scheme}:// (the host and path are not shown)"))
    weak = weak_secrets(settings)
    checks += [
        Check("secrets_not_default", not weak, ", ".join(weak) or "secrets",
              f"{len(weak)} secret(s) empty, short or published in the repository" if weak else "all set"),
        Check("development_mode_off", not settings.development, "MASKING_DEVELOPMENT",
              "development mode allows published secrets and plain http" if settings.development else "off"),
        Check("test_hooks_off", not settings.test_hooks, "MASKING_TEST_HOOKS",
              "fault-injection endpoints are open" if settings.test_hooks else "off"),
        Check("purge_scheduled", settings.purge_interval_seconds > 0, "MASKING_PURGE_INTERVAL_SECONDS",
              "retention is applied only when someone runs `masking purge`" if settings.purge_interval_seconds <= 0
              else f"every {settings.purge_interval_seconds:g} s"),
        Check("checkpoints_scheduled", settings.audit_checkpoint_seconds > 0, "MASKING_AUDIT_CHECKPOINT_SECONDS",
              "the service writes no checkpoint of the audit trail" if settings.audit_checkpoint_seconds <= 0
              else f"every {settings.audit_checkpoint_seconds:g} s"),
    ]
    return checks


def checkpoint_check(facts: Facts) -> Check:
    if facts.checkpoint_at is None:
        return Check("checkpoint_recent", False, "MASKING_AUDIT_CHECKPOINT_FILE",
                     facts.checkpoint_problem or "no checkpoint of the audit trail")
    age = facts.now - facts.checkpoint_at
    return Check("checkpoint_recent", age <= MAX_CHECKPOINT_AGE, "MASKING_AUDIT_CHECKPOINT_SECONDS",
                 f"the newest checkpoint is {_age(age)} old (at most {_age(MAX_CHECKPOINT_AGE)})")


def report(settings: Settings, facts: Facts) -> dict[str, Any]:
    checks = [*setting_checks(settings), checkpoint_check(facts)]
    overdue_requests = [r for r in facts.open_requests if r.get("overdue")]
    overdue_incidents = [i for i in facts.open_incidents if i.get("overdue")]
    return {
        "generated_at": facts.now.astimezone(timezone.utc).isoformat(timespec="seconds"),
        "passed": all(c.ok for c in checks),
        "checks": [asdict(c) for c in checks],
        "audit_checkpoint": {"at": facts.checkpoint_at.isoformat() if facts.checkpoint_at else None,
                             "age_seconds": None if facts.checkpoint_at is None
                             else int((facts.now - facts.checkpoint_at).total_seconds())},
        "requests": {"open": len(facts.open_requests), "overdue": overdue_requests},
        "incidents": {"open": len(facts.open_incidents), "overdue": overdue_incidents},
        "purposes": [asdict(p) for p in purposes_in_force(settings)],
        "retention": {kind: getattr(settings, attribute) for kind, _, attribute in RETENTION},
    }


def render_markdown(document: dict[str, Any]) -> str:
    """The report as the assessor's printable exhibit."""
    verdict = "all checks pass" if document["passed"] else \
        f"{sum(not c['ok'] for c in document['checks'])} check(s) fail"
    lines = [f"# Compliance report ({document['generated_at']})", "", f"**{verdict}.**", "",
             "| check | result | setting | found |", "| --- | --- | --- | --- |"]
    lines += [f"| {c['name']} | {'pass' if c['ok'] else 'FAIL'} | {c['setting']} | {c['detail']} |"
              for c in document["checks"]]
    checkpoint = document["audit_checkpoint"]
    lines += ["", "## Audit trail", f"- Newest checkpoint: {checkpoint['at'] or 'none'}"
              + (f" ({_age(timedelta(seconds=checkpoint['age_seconds']))} old)" if checkpoint["at"] else ""),
              "", "## Data subjects' requests", f"- Open: {document['requests']['open']};"
              f" overdue: {len(document['requests']['overdue'])}"]
    lines += [f"  - {r['id']} {r['kind']} {r['subject']} due {r['due_at']}" for r in document["requests"]["overdue"]]
    lines += ["", "## Breach incidents", f"- Open: {document['incidents']['open']};"
              f" overdue: {len(document['incidents']['overdue'])}"]
    lines += [f"  - {i['id']} {', '.join(i['overdue'])}" for i in document["incidents"]["overdue"]]
    lines += ["", "## Purposes in force"]
    lines += [f"- {p['code']} (records: {'declared' if p['records'] else 'not declared'}; from {p['source']})"
              for p in document["purposes"]] or ["- none: any well-formed purpose code is accepted"]
    lines += ["", "## Retention in force"]
    lines += [f"- {kind}: {value}{'' if value == 'never' else ' days'}"
              for kind, value in document["retention"].items()]
    return "\n".join(lines) + "\n"


def _age(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h" if seconds >= 86400 else \
        f"{seconds // 3600} h {seconds % 3600 // 60} min"
