"""Keys, and encryption of personal data at rest.

A `KeyRing` holds the master keys (AES-256, by key id; one is active for new
writes, older ones stay to read rows not yet rotated), the lookup keys for
keyed hashes (bridge/privacy/lookup.py: one active, older ones tried until
their rows are re-hashed), and audit keys (by id, one active) that key the audit
trail's chain (HMAC) and sign its checkpoints (Ed25519), so whoever can write
to the database but holds no key file can neither forge a row nor a
checkpoint (bridge/privacy/audit.py). Phone numbers are stored as AES-GCM ciphertext, bound to the
row and column they belong to (associated data), plus an HMAC-SHA256 of the
E.164 string: equal numbers give equal hashes, so the call path's lookup stays
an index hit, while a database dump alone reveals no number (a plain hash
would not do: phone numbers are few enough to enumerate).

The keys live in a file (mode 0600) outside the database, so a dump or a
backup of the database is not enough to read anything. Nothing here logs or
formats a key.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bridge.privacy.lookup import LookupKeyError, LookupKeys

NONCE_BYTES = 12
KEY_BYTES = 32


class CryptoError(Exception):
    """Base of the errors this module raises; messages never carry key material."""


class KeyFileError(CryptoError):
    """The key file is missing, unreadable, malformed or too open."""


class UnknownKey(CryptoError):
    """Data was sealed under a key id the ring does not hold (rotated out?)."""


class DecryptionFailed(CryptoError):
    """Ciphertext does not open with its key and context: tampered, or moved to another row."""


class AuditKeyMissing(KeyFileError):
    """The key file holds no audit key, so no audit row can be written."""


class BadSignature(CryptoError):
    """A signature does not verify under the public key it names."""


@dataclass(frozen=True)
class Sealed:
    key_id: str
    blob: bytes  # nonce || ciphertext || tag


@dataclass
class KeyRing:
    keys: dict[str, bytes]
    active_id: str
    lookup_key: bytes
    path: Path | None = field(default=None, compare=False)
    # Key files written before the keyed audit chain have none: `masking db upgrade` adds one.
    audit_keys: dict[str, bytes] = field(default_factory=dict)
    audit_active: str | None = None
    # Several lookup keys (rotation); a ring built from one `lookup_key` holds it as `l0`.
    lookup: LookupKeys | None = None
    _seen: tuple[float, int] = field(default=(0.0, 0), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.lookup is None:
            self.lookup = LookupKeys({"l0": self.lookup_key})
        self.lookup_key = self.lookup.keys[self.lookup.active]
        if self.active_id not in self.keys:
            raise KeyFileError("the active key id is not among the keys")
        if self.audit_active is not None and self.audit_active not in self.audit_keys:
            raise KeyFileError("the active audit key id is not among the audit keys")
        for key in (*self.keys.values(), self.lookup_key, *self.audit_keys.values()):
            if len(key) != KEY_BYTES:
                raise KeyFileError(f"every key must be {KEY_BYTES} bytes")

    def __repr__(self) -> str:  # never show key material, even in a traceback
        return (f"KeyRing(active_id={self.active_id!r}, key_ids={sorted(self.keys)!r}, "
                f"audit_active={self.audit_active!r}, lookup={self.lookup!r})")

    # -- creating and loading -------------------------------------------------
    @classmethod
    def generate(cls, key_id: str | None = None) -> "KeyRing":
        key_id = key_id or new_key_id()
        ring = cls({key_id: secrets.token_bytes(KEY_BYTES)}, key_id, secrets.token_bytes(KEY_BYTES))
        ring.add_audit_key()
        return ring

    @classmethod
    def load(cls, path: Path) -> "KeyRing":
        try:
            stat = path.stat()
            mode = stat.st_mode & 0o077
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise KeyFileError(f"no key file at {path} (create one with `masking keys init`)") from None
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"cannot read key file {path}: {type(exc).__name__}") from None
        if mode:
            raise KeyFileError(f"key file {path} is readable by others; chmod 600 it")
        try:
            keys = {str(k): base64.b64decode(v, validate=True) for k, v in raw["keys"].items()}
            audit = {str(k): base64.b64decode(v, validate=True) for k, v in raw.get("audit", {}).items()}
            active_audit = raw.get("audit_active")
            lookup = LookupKeys.from_document(raw, lambda v: base64.b64decode(v, validate=True))
            ring = cls(keys, str(raw["active"]), lookup.keys[lookup.active], path, audit,
                       None if active_audit is None else str(active_audit), lookup)
        except (KeyError, TypeError, AttributeError, ValueError, LookupKeyError):
            raise KeyFileError(f"key file {path} is malformed (want active, keys, lookup; audit optional)") from None
        ring._seen = (time.monotonic(), stat.st_mtime_ns)
        return ring

    @classmethod
    def load_or_create(cls, path: Path) -> tuple["KeyRing", bool]:
        """For development stacks: a fresh ring on first start. Returns (ring, created)."""
        if path.exists():
            return cls.load(path), False
        ring = cls.generate()
        ring.save(path)
        return ring, True

    def reload(self) -> None:
        """Take the keys (and active id) the file holds now."""
        fresh = KeyRing.load(self.path)
        self.keys, self.active_id, self.lookup_key = fresh.keys, fresh.active_id, fresh.lookup_key
        self.lookup = fresh.lookup
        self.audit_keys, self.audit_active = fresh.audit_keys, fresh.audit_active

    def save(self, path: Path | None = None) -> None:
        path = path or self.path
        if path is None:
            raise KeyFileError("no path to save the key ring to")
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "active": self.active_id,
            "keys": {k: base64.b64encode(v).decode() for k, v in self.keys.items()},
            **self.lookup.to_document(lambda v: base64.b64encode(v).decode()),
        }
        if self.audit_keys:
            document["audit"] = {k: base64.b64encode(v).decode() for k, v in self.audit_keys.items()}
            document["audit_active"] = self.audit_active
        body = json.dumps(document, indent=2)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        self.path = path
        self._seen = (time.monotonic(), path.stat().st_mtime_ns)

    def add_key(self, activate: bool = True) -> str:
        """A new master key; new writes use it once active. Old rows are re-sealed by `rotate`."""
        key_id = new_key_id()
        while key_id in self.keys:
            key_id = new_key_id()
        self.keys[key_id] = secrets.token_bytes(KEY_BYTES)
        if activate:
            self.active_id = key_id
        return key_id

    def add_audit_key(self) -> str:
        """A new audit key, active at once; rows and checkpoints made under older ones stay verifiable."""
        key_id = new_key_id("a")
        while key_id in self.audit_keys:
            key_id = new_key_id("a")
        self.audit_keys[key_id] = secrets.token_bytes(KEY_BYTES)
        self.audit_active = key_id
        return key_id

    # -- using ------------------------------------------------------------------
    def lookups(self) -> LookupKeys:
        """The lookup keys as the file holds them now: a running service takes a key
        added or retired by `masking keys` within a second, so a rotation needs no
        restart (checked at most once a second; an unreadable file keeps the keys held)."""
        now = time.monotonic()
        if self.path is not None and now - self._seen[0] >= 1.0:
            try:
                mtime = self.path.stat().st_mtime_ns
                if self._seen[1] and mtime != self._seen[1]:
                    self.reload()
                self._seen = (now, mtime)
            except (OSError, KeyFileError):
                self._seen = (now, self._seen[1])
        return self.lookup

    def lookup_hash(self, number: str) -> bytes:
        """The keyed hash a new row stores beside an encrypted number (active lookup key)."""
        return self.lookups().hash(number)

    def lookup_hashes(self, number: str) -> list[bytes]:
        """The hashes a lookup matches: under every lookup key not retired, active first."""
        return self.lookups().hashes(number)

    def kept_hashes(self, number: str) -> list[bytes]:
        """Under every lookup key in the file, retired too: for rows never re-hashed (audit, requests)."""
        return self.lookups().kept_hashes(number)

    @property
    def lookup_key_id(self) -> str:
        """The id new rows record in `lookup_key_id`."""
        return self.lookups().active

    def keyed_digest(self, purpose: str, data: bytes) -> str:
        """A keyed hex digest of `data` (e.g. a request body holding numbers), active lookup key."""
        return self.lookups().digest(purpose, data)

    def keyed_digests(self, purpose: str, data: bytes) -> list[str]:
        """`keyed_digest` under every lookup key in the file, active first: to match a stored one."""
        return self.lookups().digests(purpose, data)

    def seal(self, plaintext: bytes, context: bytes) -> Sealed:
        nonce = secrets.token_bytes(NONCE_BYTES)
        cipher = AESGCM(self.keys[self.active_id])
        return Sealed(self.active_id, nonce + cipher.encrypt(nonce, plaintext, context))

    def open(self, key_id: str, blob: bytes, context: bytes) -> bytes:
        key = self.keys.get(key_id)
        if key is None and self.path is not None:
            self.reload()  # another process may have added a key and rotated rows to it
            key = self.keys.get(key_id)
        if key is None:
            raise UnknownKey(f"data sealed under key {key_id!r}, which the key ring does not hold")
        try:
            return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context)
        except (InvalidTag, ValueError):
            raise DecryptionFailed("ciphertext does not open under its key and context") from None

    def seal_number(self, number: str, context: str) -> bytes:
        """Seal under the active key; the key id is stored once per row, so every
        sealed field of a row must use the ring's active key (see `row_key_id`)."""
        return self.seal(number.encode(), context.encode()).blob

    def open_number(self, key_id: str, blob: bytes, context: str) -> str:
        return self.open(key_id, blob, context.encode()).decode()

    @property
    def row_key_id(self) -> str:
        return self.active_id

    # -- the audit trail ----------------------------------------------------------
    @property
    def active_audit_id(self) -> str:
        """The audit key new rows and checkpoints use (AuditKeyMissing if the file has none)."""
        if self.audit_active is None:
            where = self.path or "the key file"
            raise AuditKeyMissing(f"{where} holds no audit key: run `masking db upgrade` (or `masking keys add-audit`)")
        return self.audit_active

    def audit_mac(self, key_id: str, data: bytes) -> bytes:
        """HMAC-SHA256 of an audit row's canonical form under audit key `key_id`."""
        return hmac.new(self._audit_subkey(key_id, b"chain"), data, hashlib.sha256).digest()

    def audit_sign(self, key_id: str, data: bytes) -> bytes:
        """An Ed25519 signature of a checkpoint under audit key `key_id`."""
        return Ed25519PrivateKey.from_private_bytes(self._audit_subkey(key_id, b"checkpoint")).sign(data)

    def audit_public_key(self, key_id: str) -> bytes:
        """The raw public key checking `audit_sign`'s signatures: may be given to anyone."""
        private = Ed25519PrivateKey.from_private_bytes(self._audit_subkey(key_id, b"checkpoint"))
        return private.public_key().public_bytes_raw()

    def _audit_subkey(self, key_id: str, purpose: bytes) -> bytes:
        # One secret per audit key, a derived key per use, so no key serves two algorithms.
        secret = self.audit_keys.get(key_id)
        if secret is None and self.path is not None:
            self.reload()
            secret = self.audit_keys.get(key_id)
        if secret is None:
            raise UnknownKey(f"audit key {key_id!r} is not in the key ring")
        return hmac.new(secret, b"masking-audit-" + purpose, hashlib.sha256).digest()


def verify_signature(public_key: bytes, signature: bytes, data: bytes) -> None:
    """BadSignature unless `signature` is `public_key`'s over `data`."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        raise BadSignature("the signature does not verify") from None


def new_key_id(prefix: str = "k") -> str:
    return prefix + datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S") + secrets.token_hex(2)


def number_context(table: str, row_id: object, column: str) -> str:
    """Associated data binding a sealed number to its row and column: a
    ciphertext copied into another row does not open there."""
    return f"{table}:{row_id}:{column}"


def recording_key_context(recording_id: object) -> bytes:
    """Associated data binding a wrapped recording key to its recording."""
    return f"recording-key:{recording_id}".encode()
