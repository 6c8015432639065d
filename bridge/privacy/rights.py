"""Rights of access and correction, as pure data: what a subject's export
withholds and why, who a disclosure went to, and the preservation hold.

s21(3)(c) PDPA: an answer must not reveal another person's personal data, so a
recording that mixes both voices is withheld unless asked for (and then
stated), and a two-channel one gives the subject only their own channel.
s21(4): a disclosure to law enforcement is not revealed to the subject at all;
nor is a legal hold (it may reveal an investigation). Those rows are left out
of the export and recorded, with the reason, in the export's own audit row.
A subject is told to whom their data went (the recipient), not the internal
actor, network address or reason.

s22: a correction is carried out, then sent to the organisations it was
disclosed to in the past year. Regulation 11 of the PDP Regulations 2021:
data behind a refused access request is kept at least 30 days after the
refusal; here data of a subject with an open access or correction request is
kept too (the preservation hold, bridge/store/preservation.py).
"""
from __future__ import annotations

import re
import uuid
from datetime import timedelta, timezone
from typing import Any

from bridge.privacy.audit import AuditEntry

PRESERVE_AFTER_REFUSAL = timedelta(days=30)
PRESERVING_KINDS = ("access", "correction")
VERIFY_METHODS = ("in_person", "photo_id", "callback", "account", "other")
CORRECTABLE_FIELDS = ("number",)

MIXED_AUDIO = "mixed"  # one channel holding both voices: cannot be separated
WITHHELD_MIXED = ("this recording holds both parties' voices on one channel, which cannot be separated;"
                  " it would reveal another person's personal data (PDPA s21(3)(c))")
STATED_MIXED = ("included on request although it holds both parties' voices on one channel, which cannot be"
                " separated: it contains the other party's voice too")
OWN_CHANNEL = "only your own voice channel of a two-channel recording; the other party's channel is withheld"
# An export's audit row records what it withheld under s21(4): never shown back to the subject.
INTERNAL_DETAILS = ("withheld",)
LAW_ENFORCEMENT = re.compile(r"law[ _-]?enforcement|police|s\.?\s?21\s?\(4\)", re.IGNORECASE)


class IdentityNotVerified(Exception):
    """The request's subject has not been identified: nothing is exported for it."""


class NothingToCorrect(ValueError):
    """The correction names no field, or a value equal to what is held."""


def withheld_disclosure(entry: AuditEntry) -> str | None:
    """Why a disclosure row is kept from its subject (then it is recorded in the
    export's audit row), or None when the subject may see it."""
    if entry.action.startswith("legal_hold.") or (entry.details or {}).get("via") == "legal_hold":
        return "legal hold (may reveal an investigation; PDPA s21(4))"
    if LAW_ENFORCEMENT.search(entry.reason or "") or (entry.details or {}).get("law_enforcement"):
        return "disclosure to law enforcement (PDPA s21(4))"
    return None


def recipient_of(actor: str) -> str:
    """Who received the data, as the subject is told it: an API client by its
    name, the operator's own staff as such; never an address or a person."""
    kind, _, rest = actor.partition(":")
    if kind == "apikey":
        return f"API client {rest.partition(':')[2] or rest}"
    if kind in ("cli", "console"):
        return "the operator's staff"
    return "the operator's service"


def subject_disclosure(entry: AuditEntry, subject_hash: bytes | set[bytes], session_ids: set[str]) -> dict[str, Any]:
    """One access to or change of the subject's data, as the subject sees it: the
    recipient, what and when; not the actor, the source address or the reason."""
    # the subject's hash under each lookup key in use (a rotation leaves older rows under older keys)
    about_number = entry.subject_hash in ({subject_hash} if isinstance(subject_hash, bytes) else subject_hash)
    details = {k: v for k, v in entry.details.items() if k not in INTERNAL_DETAILS}
    if not about_number and entry.action == "subject.exported":
        details = {"include_audio": entry.details.get("include_audio"),
                   "session_ids": sorted(set(entry.details.get("session_ids") or []) & session_ids)}
    other_export = not about_number and entry.action == "subject.exported"
    return {"seq": entry.seq, "at": entry.at.astimezone(timezone.utc).isoformat(),
            "recipient": "the other party of your session" if other_export else recipient_of(entry.actor),
            "action": entry.action, "target_type": entry.target_type,
            "target_id": "the other party" if other_export else entry.target_id,
            "session_id": str(entry.session_id) if entry.session_id else None,
            "about": "your number" if about_number else "your session", "details": details}


def split_disclosures(entries, subject_hash: bytes | set[bytes], session_ids: set[str]
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(what the subject is shown, what is withheld: seq and reason, for the audit row only)."""
    shown, withheld = [], []
    for entry in entries:
        reason = withheld_disclosure(entry)
        if reason is None:
            shown.append(subject_disclosure(entry, subject_hash, session_ids))
        else:
            withheld.append({"seq": entry.seq, "reason": reason})
    return shown, withheld


def own_channel(recording_channels: int, caller_role: str | None, subject_role: str) -> int | None:
    """The subject's channel of a two-channel recording (0: left, the caller's;
    1: right, the counterpart's), or None when their voice cannot be separated."""
    if recording_channels != 2 or caller_role is None:
        return None
    return 0 if caller_role == subject_role else 1


def withheld_recording(recording_id: uuid.UUID, reason: str) -> dict[str, Any]:
    return {"item": "recording", "id": str(recording_id), "reason": reason}
