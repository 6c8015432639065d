"""The disclosure ledger, as pure decisions: which audit rows are disclosures,
where a destination is, and who a subject's data went to.

A disclosure is anything that hands a participant's number, a call of theirs
or a recording of their voice to someone outside the bridge: a read through the
API, the console or the CLI, a session created (the business hands both
numbers over, and gets the session back), the out-of-session question (it
carries the caller's number to the business) and each delivered webhook. Each
writes an audit row (bridge/store/disclosures.py), so the trail answers "whose
data was read and by whom", and the subject's export derives "disclosed to whom
in the past year" from it (`disclosed_to`).

Rows about one number carry its keyed hash (`subject_hash`); rows about a whole
session (a webhook, a recording, a call record) carry the session, and a
subject is matched to them through the sessions they took part in. No row holds
a number in clear.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from bridge.privacy.audit import AuditEntry

SESSION_CREATED = "session.created"
SESSION_READ = "session.read"
CALL_READ = "call.read"
RECORDING_READ = "recording.read"
RECORDING_AUDIO = "recording.audio"
NUMBER_REVEALED = "number.revealed"  # the console's reveal of one number
CONSOLE_SESSION_VIEWED = "console.session.viewed"
OUT_OF_SESSION = "out_of_session.asked"
WEBHOOK_DELIVERED = "webhook.delivered"
DISCLOSURE_ACTIONS = frozenset({SESSION_CREATED, SESSION_READ, CALL_READ, RECORDING_READ, RECORDING_AUDIO,
                                NUMBER_REVEALED, CONSOLE_SESSION_VIEWED, OUT_OF_SESSION, WEBHOOK_DELIVERED})
OUTBOUND_ACTIONS = frozenset({OUT_OF_SESSION, WEBHOOK_DELIVERED})
UNKNOWN_COUNTRY = "unknown"


# -- destinations ---------------------------------------------------------------------------
def destination_host(url: str) -> str:
    """The host a URL sends to, lowercased: never its path, query or credentials
    (they may carry a token). "unknown" for a URL without one."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    return (host or "unknown").lower().rstrip(".")


def country_of(host: str, mapping: Mapping[str, str], declared: str | None = None) -> str:
    """Where `host` is: the configured mapping (the exact host, else the longest
    `*.domain` it is under), else the country its purpose's registry entry
    declares (`declared`), else "unknown": the ledger never guesses from an
    address. `mapping`: Settings.destination_country_map (MASKING_DESTINATION_COUNTRIES)."""
    host = host.lower().rstrip(".")
    if host in mapping:
        return mapping[host]
    suffixes = [pattern for pattern in mapping if pattern.startswith("*.") and host.endswith(pattern[1:])]
    if suffixes:
        return mapping[max(suffixes, key=len)]
    if declared and len(declared) == 2 and declared.isalpha():
        return declared.upper()
    return UNKNOWN_COUNTRY


def destination_details(url: str, mapping: Mapping[str, str], declared: str | None = None) -> dict[str, str]:
    host = destination_host(url)
    return {"host": host, "country": country_of(host, mapping, declared)}


# -- recipients -------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipient:
    """Who received a disclosure, as the subject is told: a kind, and its name."""

    kind: str  # api_key | cli_operator | console | webhook | business | service
    name: str  # the key's actor name, the operator, or the destination host
    account: str | None = None  # an API key's account
    country: str | None = None  # a destination's country (outbound only)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.account is not None:
            out["account"] = self.account
        if self.country is not None:
            out["country"] = self.country
        return out


def recipient_of(entry: AuditEntry) -> Recipient:
    """Who the row's disclosure went to."""
    details = entry.details or {}
    if entry.action in OUTBOUND_ACTIONS:
        kind = "webhook" if entry.action == WEBHOOK_DELIVERED else "business"
        return Recipient(kind, str(details.get("host", entry.target_id)),
                         country=str(details.get("country") or UNKNOWN_COUNTRY))
    actor = entry.actor
    if actor.startswith("apikey:"):
        account = details.get("account")
        return Recipient("api_key", actor, account=str(account) if account is not None else None)
    if actor.startswith("cli:"):
        return Recipient("cli_operator", actor)
    if actor.startswith("console:"):
        return Recipient("console", actor)
    return Recipient("service" if actor == "service" else "other", actor)


def concerns(entry: AuditEntry, subject_hash: bytes | set[bytes]) -> bool:
    """A disclosure of the subject's data: about their number, or about one of
    their sessions as a whole (no number's hash). A row about the other party's
    number in a shared session is the other party's."""
    hashes = {subject_hash} if isinstance(subject_hash, bytes) else subject_hash  # under each lookup key in use
    return entry.action in DISCLOSURE_ACTIONS and (entry.subject_hash is None or entry.subject_hash in hashes)


def disclosed_to(entries: Iterable[AuditEntry], subject_hash: bytes | set[bytes], since: datetime) -> list[dict[str, Any]]:
    """"Disclosed to whom" since `since`, from the ledger's rows: one item per
    recipient with what they received (actions and counts), which sessions,
    and when first and last; most recent recipient first."""
    grouped: dict[Recipient, dict[str, Any]] = {}
    for entry in entries:
        if entry.at < since or not concerns(entry, subject_hash):
            continue
        recipient = recipient_of(entry)
        item = grouped.setdefault(recipient, {"actions": {}, "sessions": set(), "first_at": entry.at,
                                              "last_at": entry.at})
        item["actions"][entry.action] = item["actions"].get(entry.action, 0) + 1
        if entry.session_id is not None:
            item["sessions"].add(str(entry.session_id))
        item["first_at"], item["last_at"] = min(item["first_at"], entry.at), max(item["last_at"], entry.at)
    ordered = sorted(grouped.items(), key=lambda pair: (pair[1]["last_at"], pair[0].kind, pair[0].name),
                     reverse=True)
    return [{"recipient": recipient.to_json(), "actions": dict(sorted(item["actions"].items())),
             "times": sum(item["actions"].values()), "session_ids": sorted(item["sessions"]),
             "first_at": _utc(item["first_at"]), "last_at": _utc(item["last_at"])}
            for recipient, item in ordered]


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


# -- `masking audit list` ------------------------------------------------------------------
def parse_moment(raw: str, option: str) -> datetime:
    """`--since`/`--until`: YYYY-MM-DD (that day's start, UTC) or ISO 8601 with an offset."""
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{option} must be YYYY-MM-DD or an ISO 8601 time with a UTC offset") from None
    if len(raw) == 10:
        return moment.replace(tzinfo=timezone.utc)
    if moment.tzinfo is None:
        raise ValueError(f"{option} must carry a UTC offset (e.g. +08:00 or Z)")
    return moment
