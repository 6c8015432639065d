"""The lookup keys: the one place a phone number becomes a keyed hash.

A number is stored sealed (AES-GCM) plus an HMAC-SHA256 of it under a lookup
key, so an equality lookup stays an index hit while a dump reveals no number.
The key ring can hold several lookup keys, each in one of three states:

- `active`: every new row hashes under it (and records its id, `lookup_key_id`);
- in use: rows hashed under it may remain until `masking keys rehash` has
  moved them, so every lookup tries it too (`hashes`, active first);
- `retired`: no row that can be re-hashed uses it any more; it is kept only to
  find what cannot be re-hashed (audit rows, subject requests: `kept_hashes`).

The legacy single key of older key files is `l0`. Nothing here logs a key.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

LEGACY_ID = "l0"
KEY_BYTES = 32


class LookupKeyError(Exception):
    """A lookup key change the ring cannot make (never carries key material)."""


def number_hash(key: bytes, number: str) -> bytes:
    """THE keyed hash of an E.164 number: every table's `*_hash` column holds this."""
    return hmac.new(key, b"number:" + number.encode(), hashlib.sha256).digest()


def keyed_digest(key: bytes, purpose: str, data: bytes) -> str:
    """A keyed hex digest of `data` for `purpose` (e.g. a request body holding numbers)."""
    return hmac.new(key, purpose.encode() + b":" + data, hashlib.sha256).hexdigest()


@dataclass
class LookupKeys:
    keys: dict[str, bytes]
    active: str = LEGACY_ID
    retired: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.active not in self.keys:
            raise LookupKeyError("the active lookup key id is not among the lookup keys")
        if self.active in self.retired:
            raise LookupKeyError("the active lookup key cannot be retired")
        if not self.retired <= set(self.keys):
            raise LookupKeyError("a retired lookup key id is not among the lookup keys")
        if any(len(key) != KEY_BYTES for key in self.keys.values()):
            raise LookupKeyError(f"every lookup key must be {KEY_BYTES} bytes")

    def __repr__(self) -> str:
        return f"LookupKeys(active={self.active!r}, ids={sorted(self.keys)!r}, retired={sorted(self.retired)!r})"

    @property
    def in_use(self) -> list[str]:
        """Ids every lookup must try: the active one first, then the others not retired (oldest first)."""
        return [self.active] + sorted(k for k in self.keys if k != self.active and k not in self.retired)

    # -- hashing ------------------------------------------------------------------------
    def hash(self, number: str) -> bytes:
        """The hash a new row stores (under the active key)."""
        return number_hash(self.keys[self.active], number)

    def hash_under(self, key_id: str, number: str) -> bytes:
        return number_hash(self.keys[key_id], number)

    def hashes(self, number: str) -> list[bytes]:
        """The number's hash under every key not retired, active first: what a lookup matches."""
        return [number_hash(self.keys[k], number) for k in self.in_use]

    def kept_hashes(self, number: str) -> list[bytes]:
        """Under every key still in the file, retired ones too: for rows that are never re-hashed."""
        return self.hashes(number) + [number_hash(self.keys[k], number) for k in sorted(self.retired)]

    def digest(self, purpose: str, data: bytes) -> str:
        return keyed_digest(self.keys[self.active], purpose, data)

    def digests(self, purpose: str, data: bytes) -> list[str]:
        """`digest` under every key still in the file, active first (stored digests are never re-computed)."""
        return [keyed_digest(self.keys[k], purpose, data) for k in self.in_use + sorted(self.retired)]

    # -- changing -------------------------------------------------------------------------
    def add(self) -> str:
        """A new lookup key, active at once; rows under the others stay findable until re-hashed."""
        number = 1 + max((int(k[1:]) for k in self.keys if k[1:].isdigit()), default=0)
        key_id = f"l{number}"
        self.keys[key_id] = secrets.token_bytes(KEY_BYTES)
        self.active = key_id
        return key_id

    def retire(self, key_id: str) -> None:
        """Stop trying `key_id` in lookups (the caller checked no re-hashable row uses it)."""
        if key_id not in self.keys:
            raise LookupKeyError(f"no lookup key {key_id!r} in the key file")
        if key_id == self.active:
            raise LookupKeyError("the active lookup key cannot be retired; add a new one first")
        self.retired.add(key_id)

    def forget(self, key_id: str) -> None:
        """Delete a retired key's material: what only it could find is then unfindable by number."""
        if key_id not in self.retired:
            raise LookupKeyError(f"lookup key {key_id!r} is not retired; retire it first")
        del self.keys[key_id]
        self.retired.discard(key_id)

    # -- the key file -----------------------------------------------------------------------
    @classmethod
    def from_document(cls, raw: dict, decode) -> "LookupKeys":
        """From a key file: `lookup_keys`/`lookup_active`/`lookup_retired`, or the legacy `lookup` alone (`l0`)."""
        if "lookup_keys" in raw:
            keys = {str(k): decode(v) for k, v in raw["lookup_keys"].items()}
            return cls(keys, str(raw["lookup_active"]), {str(k) for k in raw.get("lookup_retired", [])})
        return cls({LEGACY_ID: decode(raw["lookup"])})

    def to_document(self, encode) -> dict:
        document = {"lookup_keys": {k: encode(v) for k, v in self.keys.items()}, "lookup_active": self.active,
                    "lookup_retired": sorted(self.retired)}
        if LEGACY_ID in self.keys:  # a binary from before rotation reads this, and means l0 by it
            document["lookup"] = encode(self.keys[LEGACY_ID])
        return document
