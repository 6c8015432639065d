"""Data subjects' access requests, as pure data: what an export holds, and the
deadlines requests are answered by.

An export answers "what do you hold about my number?": the sessions the number
took part in, their calls, the recordings' metadata (and, on request, the
audio), and who accessed or exported that data in the past twelve months
(from the audit trail). The person asking may see their own number; the other
party's number never appears, in any spelling: sessions name them by role and
masked number, and `scrub` is the net under every document.

PDPA gives 30 days to answer (`MASKING_SUBJECT_REQUEST_DAYS`); a request still
open past its `due_at` is overdue.
"""
from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import phonenumbers

from bridge.numbering import mask_number, redact_text
from bridge.privacy.audit import AuditEntry
from bridge.privacy.rights import split_disclosures
from bridge.sessions.caller_id import caller_of, number_of, other, participant, role_of
from bridge.sessions.models import MaskingSession

SCHEMA_VERSION = 1
DISCLOSURE_WINDOW = timedelta(days=365)
REQUEST_KINDS = ("access", "correction", "erasure", "withdrawal")
# What a withdrawal of consent does (PDPA s16(2): the person is told), in the answer and its audit row.
WITHDRAWAL_CONSEQUENCES = (
    "No call to or from this number is recorded from now on, on any session, whatever the session asked for.",
    "Recordings already made of this number's calls are no longer played or handed out, except where a legal"
    " hold requires them to be kept and read; each such read is audited.",
    "Calls still connect: masking itself does not need consent to record, so calls go on being connected as"
    " before. To stop the calls too, the business must close the sessions.",
    "Recordings and call records are deleted at the end of their retention period, or earlier on an erasure"
    " request.",
)
REQUEST_STATUSES = ("open", "done", "refused")
MAX_NOTES = 1000
OLDEST_REQUEST = timedelta(days=3660)  # a request received longer ago is a typo
REDACTED = "[redacted]"


class RequestNotOpen(Exception):
    """The request was already completed or refused."""


class RequestMismatch(ValueError):
    """The request is for another number, or of a kind this action does not answer."""


# -- requests -------------------------------------------------------------------------
@dataclass(frozen=True)
class SubjectRequest:
    id: uuid.UUID
    kind: str  # access | correction | erasure
    subject_hint: str  # the number masked (+65****4567), never the number
    received_at: datetime
    due_at: datetime
    status: str  # open | done | refused
    actor: str  # who opened it
    completed_at: datetime | None = None
    completed_by: str | None = None
    notes: str | None = None
    verified_at: datetime | None = None  # the identity check (bridge/privacy/rights.py)
    verified_by: str | None = None
    verify_method: str | None = None

    def overdue(self, now: datetime) -> bool:
        return self.status == "open" and now > self.due_at

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {"id": str(self.id), "kind": self.kind, "subject": self.subject_hint, "status": self.status,
                "received_at": self.received_at.isoformat(), "due_at": self.due_at.isoformat(),
                "overdue": self.overdue(now), "completed_at": _iso(self.completed_at), "opened_by": self.actor,
                "completed_by": self.completed_by, "notes": self.notes,
                "identity_verified": {"at": _iso(self.verified_at), "by": self.verified_by,
                                      "method": self.verify_method} if self.verified_at else None}


def due_at(received_at: datetime, days: int) -> datetime:
    """When a request received at `received_at` must be answered by."""
    return received_at + timedelta(days=days)


def received_at(raw: str | None, now: datetime) -> datetime:
    """A request's received time from `YYYY-MM-DD` (that day's start, UTC) or an
    ISO 8601 time with an offset; now when not given. Never in the future."""
    if raw is None:
        return now
    moment: datetime | None
    try:
        moment = datetime.combine(date.fromisoformat(raw), time(), timezone.utc) if len(raw) == 10 \
            else datetime.fromisoformat(raw)
    except (ValueError, TypeError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValueError("the received date must be YYYY-MM-DD or an ISO 8601 time with a UTC offset")
    if moment > now:
        raise ValueError("the received date cannot be in the future")
    if moment < now - OLDEST_REQUEST:
        raise ValueError("the received date is more than ten years ago")
    return moment


def clean_notes(raw: str | None) -> str | None:
    """Notes as they may be stored: printable, any phone number masked."""
    if raw is None:
        return None
    text = redact_text("".join(c if c.isprintable() else " " for c in raw).strip())
    return text[:MAX_NOTES].rstrip() or None


# -- what an export holds ----------------------------------------------------------------
@dataclass(frozen=True)
class SubjectHoldings:
    """Everything held about one number, read from the store."""

    subject: str  # E.164, as the person gave it (normalised)
    subject_hash: bytes
    sessions: tuple[MaskingSession, ...]
    calls: tuple[dict, ...]  # call rows of those sessions
    recordings: tuple[dict, ...]  # recording rows of those calls
    disclosures: tuple[AuditEntry, ...]  # audit rows about the number or its sessions, past 12 months
    older_hashes: tuple[bytes, ...] = ()  # the number's hashes under older lookup keys (rotation)


def session_document(session: MaskingSession, subject: str, now: datetime) -> dict[str, Any]:
    """A session as its subject knows it: their own virtual number only (under
    `per_participant` the other's is never shown to them, docs/api.md)."""
    role = role_of(session, subject)
    return {"id": str(session.id), "virtual_number": number_of(session, role), "your_role": role,
            "your_number": subject,
            "counterpart": {"role": other(role), "number": mask_number(participant(session, other(role)))},
            "status": session.state(now), "purpose": session.purpose, "record": session.record,
            "external_ref": session.external_ref, "created_at": session.created_at.isoformat(),
            "expires_at": session.expires_at.isoformat(), "closed_at": _iso(session.closed_at),
            "allowed_window": {"start": _iso(session.window_starts_at), "end": _iso(session.window_ends_at)},
            "recording_channels": session.recording_channels}


CALL_FIELDS = ("virtual_number", "kind", "direction", "disposition", "reject_reason", "dial_status", "hangup_by",
               "setup_ms", "recorded", "recording_opt_out", "custom_field")
CALL_TIMES = ("started_at", "caller_answered_at", "ringing_at", "answered_at", "ended_at", "recording_started_at")


def call_document(row: dict, session: MaskingSession, subject: str) -> dict[str, Any]:
    """A call; `you_were` says whether the subject dialed or was dialed. Its
    `virtual_number` is the subject's own: the one they dialed or saw (a B->A
    row holds X_B, which A never sees)."""
    role = role_of(session, subject)
    caller = caller_of(row.get("direction"))
    you_were = None if caller is None else "caller" if caller == role else "callee"
    out: dict[str, Any] = {"id": str(row["id"]), "session_id": str(session.id), "you_were": you_were}
    out |= {name: row.get(name) for name in CALL_FIELDS}
    out["virtual_number"] = number_of(session, role)
    out |= {name: _iso(row.get(name)) for name in CALL_TIMES}
    out["talk_seconds"] = float(row["talk_seconds"]) if row.get("talk_seconds") is not None else None
    notices = row.get("notices") or []
    out["notices"] = json.loads(notices) if isinstance(notices, str) else notices
    out["recording_id"] = str(row["recording_id"]) if row.get("recording_id") else None
    return out


AUDIO_STATES = ("included", "own_channel", "withheld", "not_requested", "shredded", "gone", "unreadable")


def recording_document(row: dict, audio: str, file: str | None = None) -> dict[str, Any]:
    """A recording's metadata (never where it is stored); `audio` one of AUDIO_STATES."""
    return {"id": str(row["id"]), "call_id": str(row["call_id"]), "session_id": _str(row.get("session_id")),
            "format": row["format"], "bytes": row["bytes"], "duration_seconds": float(row["duration_seconds"]),
            "sha256": row["sha256"], "created_at": row["created_at"].isoformat(), "sealed": row["sealed"],
            "shredded_at": _iso(row.get("shredded_at")), "audio": audio, "file": file}


def number_spellings(number: str) -> list[str]:
    """E.164, digits only, and the national significant number: how a number may be written."""
    digits = number.lstrip("+")
    spellings = [number, digits]
    try:
        spellings.append(phonenumbers.national_significant_number(phonenumbers.parse(number)))
    except phonenumbers.NumberParseException:
        pass
    return sorted({s for s in spellings if len(s) >= 6}, key=len, reverse=True)


def scrub(value: Any, numbers: list[str]) -> Any:
    """`value` (JSON data) with every spelling of `numbers` replaced: the net under
    the documents, for a number that reached free text (an external_ref, a reason)."""
    patterns = [re.compile(r"(?<!\d)" + re.escape(s) + r"(?!\d)") for n in numbers for s in number_spellings(n)]
    if not patterns:
        return value

    def clean(item: Any) -> Any:
        if isinstance(item, str):
            for pattern in patterns:
                item = pattern.sub(REDACTED, item)
            return item
        if isinstance(item, dict):
            return {clean(k): clean(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [clean(v) for v in item]
        return item

    return clean(value)


def documents(holdings: SubjectHoldings, now: datetime, audio: dict[uuid.UUID, tuple[str, str | None]]
              ) -> dict[str, list[dict]]:
    """The JSON files of an export, by name; `audio` says, per recording id, its
    AUDIO_STATES value and its file in the zip. The other party's numbers are
    scrubbed, and so is their own virtual number unless it is one of the subject's too."""
    sessions = {s.id: s for s in holdings.sessions}
    subject = holdings.subject
    roles = [(s, role_of(s, subject)) for s in holdings.sessions]
    mine = {number_of(s, role) for s, role in roles}
    hidden = {participant(s, other(role)) for s, role in roles} | {number_of(s, other(role)) for s, role in roles}
    out = {
        "sessions.json": [session_document(s, subject, now) for s in holdings.sessions],
        "calls.json": [call_document(c, sessions[c["session_id"]], subject) for c in holdings.calls
                       if c.get("session_id") in sessions],
        "recordings.json": [recording_document(r, *audio.get(r["id"], ("not_requested", None)))
                            for r in holdings.recordings],
        "disclosures.json": split_disclosures(holdings.disclosures, {holdings.subject_hash, *holdings.older_hashes},
                                              {str(i) for i in sessions})[0],
    }
    return scrub(out, sorted(hidden - mine - {subject}))


def encode(document: Any) -> bytes:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, default=str).encode() + b"\n"


def manifest(subject: str, generated_at: datetime, files: dict[str, bytes | tuple[int, str]],
             counts: dict[str, int], request_id: uuid.UUID | None = None) -> dict[str, Any]:
    """The export's table of contents: `files` maps each name to its bytes or
    (audio, hashed while written) its (size, sha256 in hex)."""
    listing = []
    for name in sorted(files):
        content = files[name]
        size, digest = (len(content), hashlib.sha256(content).hexdigest()) if isinstance(content, bytes) \
            else content
        listing.append({"name": name, "bytes": size, "sha256": digest})
    return {"schema_version": SCHEMA_VERSION, "generated_at": generated_at.astimezone(timezone.utc).isoformat(),
            "subject": subject, "request_id": _str(request_id), "counts": counts,
            "disclosure_window_days": DISCLOSURE_WINDOW.days, "files": listing,
            "note": "The other party of each session is shown by role and masked number only; what is withheld"
                    " and why is in withheld.json."}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _str(value: Any) -> str | None:
    return str(value) if value is not None else None
