"""The audit trail, as pure data: entries, their keyed hash chain, its verification.

Every row carries the hash of the row before it (the first, 32 zero bytes),
and seq numbers are gapless: an edited row no longer matches its hash, a
deleted one leaves a gap, a rewritten stretch no longer links. The hash is an
HMAC under an audit key from the key ring (`key_id` names it), so whoever
writes to the database without the key file cannot recompute it; rows written
before the keyed chain (`key_id` NULL) keep their plain SHA-256, and no
unkeyed row may follow a keyed one. Deleting the newest rows, or rewriting
all of them, leaves a chain consistent in itself: signed checkpoints of the
head kept outside the database (bridge/privacy/checkpoint.py) reveal both.

Rows never hold a phone number, a token, a key or a secret: numbers appear as
keyed hashes (`subject_hash`) or masked, free text is redacted.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Callable, Iterable, Mapping

from bridge.config import SECRET_SETTINGS, UNDISCLOSED_SETTINGS, Settings, settings_by_name
from bridge.numbering import redact_text
from bridge.privacy.crypto import UnknownKey

# (audit key id, canonical bytes) -> the row's HMAC: KeyRing.audit_mac.
Mac = Callable[[str, bytes], bytes]

GENESIS = bytes(32)  # the prev_hash of seq 1
MAX_REASON = 200


@dataclass(frozen=True)
class Actor:
    """Who acts and from where, for the rows their changes write."""

    name: str  # apikey:<prefix>:<key name>, cli:<os user>, service
    source: str  # the client's address, cli@<host>, service@<host>
    reason: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str  # dotted: recording.read, apikey.created, config.changed...
    target_type: str
    target_id: str
    source: str
    session_id: uuid.UUID | None = None
    subject_hash: bytes | None = None  # KeyRing.lookup_hash of a phone number, never the number
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    prev_hash: bytes = GENESIS
    hash: bytes = b""
    key_id: str | None = None  # the audit key of the row's HMAC; None: a row of the unkeyed chain before it

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("an audit entry's time must carry its time zone")


class Problem(StrEnum):
    EDITED = "edited"  # the row differs from what its hash sealed
    DELETED = "deleted"  # a seq is missing (or, against an anchor or a checkpoint, the newest rows)
    BAD_LINK = "bad link"  # the row's prev_hash is not the hash of the row before it
    UNKEYED = "unkeyed"  # a plain SHA-256 row after a keyed one: rewritten without the key
    REWRITTEN = "rewritten"  # a checkpointed row now has another hash
    UNKNOWN_KEY = "unknown key"  # keyed under an audit key the key ring does not hold: unverifiable


@dataclass(frozen=True)
class Verification:
    ok: bool
    rows_checked: int
    head_seq: int  # the last intact row (0: none)
    head_hash: bytes  # its hash (GENESIS: none)
    first_bad_seq: int | None = None
    problem: Problem | None = None
    message: str = ""


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """Every field as JSON values: times in UTC, ids as text, bytes in hex."""
    return {f.name: _plain(getattr(entry, f.name)) for f in fields(entry)}


def canonical(entry: AuditEntry) -> bytes:
    """Stable JSON of every field but `hash`: what the hash seals. An unkeyed
    row's form has no `key_id`, exactly as such rows were sealed."""
    document = entry_json(entry)
    del document["hash"]
    if entry.key_id is None:
        del document["key_id"]
    return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def chain_hash(prev_hash: bytes, entry: AuditEntry, mac: Mac | None = None) -> bytes:
    """The hash of `entry` chained after the row whose hash is `prev_hash`: the
    HMAC under its `key_id` (by `mac`), or SHA-256 for a row before the keyed chain."""
    body = canonical(replace(entry, prev_hash=prev_hash))
    if entry.key_id is None:
        return hashlib.sha256(body).digest()
    if mac is None:
        raise UnknownKey(f"row {entry.seq} is keyed under audit key {entry.key_id!r}, and no key ring was given")
    return mac(entry.key_id, body)


def sealed(entry: AuditEntry, prev_hash: bytes, mac: Mac | None = None) -> AuditEntry:
    return replace(entry, prev_hash=prev_hash, hash=chain_hash(prev_hash, entry, mac))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat(timespec="microseconds")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


class ChainWalk:
    """`verify_chain` one row at a time, for a trail read page by page.

    `mac`: the key ring's `audit_mac`, to check keyed rows. `expected_head`: a
    head hash anchored earlier; it must still be in the trail, or its newest
    rows were deleted (or the chain was rewritten). `checkpoints`: hash by seq
    of heads checkpointed earlier (signatures already checked); each must still
    be in the trail with that hash, and the trail must reach the newest.
    `start`: the (seq, hash) to continue from, for a walk over newer rows only.
    """

    def __init__(self, expected_head: bytes | None = None, mac: Mac | None = None,
                 checkpoints: Mapping[int, bytes] | None = None, start: tuple[int, bytes] = (0, GENESIS)):
        self.expected_head, self.mac = expected_head, mac
        self.checkpoints = dict(checkpoints or {})
        self.anchor_seen = expected_head is None or expected_head == GENESIS
        self.rows_checked, (self.head_seq, self.head_hash) = 0, start
        self.unkeyed_rows, self.keyed = 0, False
        self.failure: Verification | None = None

    def add(self, row: AuditEntry) -> bool:
        """Check the next row (in seq order); False once the chain is broken."""
        if self.failure:
            return False
        expected = self.head_seq + 1
        if row.seq > expected:
            return self._fail(expected, Problem.DELETED, f"row {expected} is missing")
        if row.seq < expected:
            return self._fail(row.seq, Problem.BAD_LINK, f"row {row.seq} is out of place")
        if row.key_id is None and self.keyed:
            return self._fail(row.seq, Problem.UNKEYED, f"row {row.seq} has a plain hash after keyed rows")
        try:
            matches = chain_hash(row.prev_hash, row, self.mac) == row.hash
        except UnknownKey:
            return self._fail(row.seq, Problem.UNKNOWN_KEY,
                              f"row {row.seq} is keyed under audit key {row.key_id!r}, not in the key ring")
        if not matches:
            return self._fail(row.seq, Problem.EDITED, f"row {row.seq} does not match its hash")
        if row.prev_hash != self.head_hash:
            return self._fail(row.seq, Problem.BAD_LINK, f"row {row.seq} does not link to the row before it")
        if self.checkpoints.get(row.seq, row.hash) != row.hash:
            return self._fail(row.seq, Problem.REWRITTEN, f"row {row.seq} differs from its checkpoint")
        self.rows_checked, self.head_seq, self.head_hash = self.rows_checked + 1, row.seq, row.hash
        self.keyed = self.keyed or row.key_id is not None
        self.unkeyed_rows += row.key_id is None
        self.anchor_seen = self.anchor_seen or row.hash == self.expected_head
        return True

    def result(self) -> Verification:
        if self.failure:
            return self.failure
        newest = max(self.checkpoints, default=0)
        if newest > self.head_seq:
            self._fail(self.head_seq + 1, Problem.DELETED,
                       f"the trail ends at seq {self.head_seq} but seq {newest} was checkpointed:"
                       f" rows after {self.head_seq} were deleted")
            return self.failure
        if not self.anchor_seen:
            self._fail(self.head_seq + 1, Problem.DELETED,
                       f"the expected head is not in the trail: rows after {self.head_seq} were deleted"
                       " (or the chain rewritten)")
            return self.failure
        unkeyed = f" ({self.unkeyed_rows} from before the keyed chain)" if self.unkeyed_rows else ""
        return Verification(True, self.rows_checked, self.head_seq, self.head_hash,
                            message=f"{self.rows_checked} rows intact{unkeyed}")

    def _fail(self, seq: int, problem: Problem, message: str) -> bool:
        self.failure = Verification(False, self.rows_checked, self.head_seq, self.head_hash, seq, problem,
                                    f"{message}: {problem}")
        return False


def verify_chain(rows: Iterable[AuditEntry], expected_head: bytes | None = None, mac: Mac | None = None,
                 checkpoints: Mapping[int, bytes] | None = None) -> Verification:
    """Walk `rows` in seq order; stop at the first that breaks the chain."""
    walk = ChainWalk(expected_head, mac, checkpoints)
    for row in rows:
        if not walk.add(row):
            break
    return walk.result()


def clean_reason(raw: str | None) -> str | None:
    """An operator's free-text reason as it may be stored: printable, at most
    MAX_REASON characters, any phone number in it masked; None if empty."""
    if raw is None:
        return None
    text = redact_text("".join(c if c.isprintable() else " " for c in raw).strip())
    return text[:MAX_REASON].rstrip() or None


# -- configuration --------------------------------------------------------------------
def config_snapshot(settings: Settings, digest: Callable[[str], str]) -> dict[str, str]:
    """Settings by variable name, as a config.changed row records them: secrets
    left out, settings that may carry credentials or personal data (URLs) as a
    keyed `digest` of their value, the rest as their value."""
    return {name: digest(value) if name in UNDISCLOSED_SETTINGS else value
            for name, value in settings_by_name(settings).items() if name not in SECRET_SETTINGS}


def fingerprint(snapshot: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(snapshot, sort_keys=True).encode()).hexdigest()


def changed_settings(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
