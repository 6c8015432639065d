"""Signed checkpoints of the audit trail's head, as pure data.

A checkpoint says "at this time the trail's newest row was seq S with hash H",
signed (Ed25519) with an audit key from the key ring. Kept outside the
database (a file, syslog, a URL), checkpoints are what a chain cannot give
itself: evidence of rows that were there. `masking audit verify` requires every
checkpointed (seq, hash) to be still in the trail, so deleting the newest rows
(truncation) or recomputing the chain (rewriting) both show.

One checkpoint per line, JSON; the signature covers every other field.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from bridge.privacy.crypto import BadSignature, KeyRing, UnknownKey, verify_signature

DOMAIN = b"masking-audit-checkpoint:v1\n"  # so a signature over a checkpoint signs nothing else


class CheckpointError(Exception):
    """A checkpoint line is malformed, forged, or contradicts another."""


@dataclass(frozen=True)
class Checkpoint:
    seq: int  # the trail's newest row (0: the trail was empty)
    hash: bytes  # that row's hash (GENESIS for an empty trail)
    at: datetime
    host: str  # who wrote it: the service's or the operator's host
    key_id: str  # the audit key that signed it
    signature: bytes = b""

    def signed_part(self) -> bytes:
        document = {"seq": self.seq, "hash": self.hash.hex(), "key_id": self.key_id, "host": self.host,
                    "at": self.at.astimezone(timezone.utc).isoformat(timespec="microseconds")}
        return DOMAIN + json.dumps(document, sort_keys=True, separators=(",", ":")).encode()

    def to_line(self) -> str:
        document = json.loads(self.signed_part()[len(DOMAIN):])
        document["signature"] = base64.b64encode(self.signature).decode()
        return json.dumps(document, sort_keys=True) + "\n"


def sign_checkpoint(keys: KeyRing, seq: int, head_hash: bytes, at: datetime, host: str) -> Checkpoint:
    """A checkpoint of (seq, head_hash), signed with the ring's active audit key."""
    unsigned = Checkpoint(seq, head_hash, at, host, keys.active_audit_id)
    return Checkpoint(seq, head_hash, at, host, unsigned.key_id, keys.audit_sign(unsigned.key_id,
                                                                                 unsigned.signed_part()))


def parse_checkpoint(line: str) -> Checkpoint:
    try:
        raw = json.loads(line)
        checkpoint = Checkpoint(int(raw["seq"]), bytes.fromhex(raw["hash"]), datetime.fromisoformat(raw["at"]),
                                str(raw["host"]), str(raw["key_id"]), base64.b64decode(raw["signature"], validate=True))
    except (ValueError, KeyError, TypeError):
        raise CheckpointError("not a checkpoint") from None
    if checkpoint.at.tzinfo is None or checkpoint.seq < 0 or len(checkpoint.hash) != 32:
        raise CheckpointError("not a checkpoint")
    return checkpoint


def verify_checkpoint(keys: KeyRing, checkpoint: Checkpoint) -> None:
    """CheckpointError unless an audit key of `keys` signed `checkpoint`."""
    try:
        verify_signature(keys.audit_public_key(checkpoint.key_id), checkpoint.signature, checkpoint.signed_part())
    except UnknownKey:
        raise CheckpointError(f"signed with audit key {checkpoint.key_id!r}, which the key ring does not hold") \
            from None
    except BadSignature:
        raise CheckpointError("its signature does not verify: not written with this key ring") from None


def read_checkpoints(keys: KeyRing, lines: Iterable[str]) -> list[Checkpoint]:
    """Every checkpoint of a file, each verified; CheckpointError naming the first bad line."""
    checkpoints = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            checkpoint = parse_checkpoint(line)
            verify_checkpoint(keys, checkpoint)
        except CheckpointError as exc:
            raise CheckpointError(f"line {number}: {exc}") from None
        checkpoints.append(checkpoint)
    return checkpoints


def hashes_by_seq(checkpoints: Iterable[Checkpoint]) -> dict[int, bytes]:
    """What the trail must still hold; two checkpoints of one seq with different
    hashes mean the trail was rewritten in between (CheckpointError)."""
    found: dict[int, bytes] = {}
    for checkpoint in checkpoints:
        if found.setdefault(checkpoint.seq, checkpoint.hash) != checkpoint.hash:
            raise CheckpointError(f"two checkpoints of seq {checkpoint.seq} disagree: the trail was rewritten")
    return {seq: digest for seq, digest in found.items() if seq > 0}
