"""Keys, and encryption of personal data at rest.

A `KeyRing` holds the master keys (AES-256, by key id; one is active for new
writes, older ones stay to read rows not yet rotated) and a separate lookup key
for keyed hashes. Phone numbers are stored as AES-GCM ciphertext, bound to the
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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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

    def __post_init__(self) -> None:
        if self.active_id not in self.keys:
            raise KeyFileError("the active key id is not among the keys")
        for key in (*self.keys.values(), self.lookup_key):
            if len(key) != KEY_BYTES:
                raise KeyFileError(f"every key must be {KEY_BYTES} bytes")

    def __repr__(self) -> str:  # never show key material, even in a traceback
        return f"KeyRing(active_id={self.active_id!r}, key_ids={sorted(self.keys)!r})"

    # -- creating and loading -------------------------------------------------
    @classmethod
    def generate(cls, key_id: str | None = None) -> "KeyRing":
        key_id = key_id or new_key_id()
        return cls({key_id: secrets.token_bytes(KEY_BYTES)}, key_id, secrets.token_bytes(KEY_BYTES))

    @classmethod
    def load(cls, path: Path) -> "KeyRing":
        try:
            mode = path.stat().st_mode & 0o077
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise KeyFileError(f"no key file at {path} (create one with `masking keys init`)") from None
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"cannot read key file {path}: {type(exc).__name__}") from None
        if mode:
            raise KeyFileError(f"key file {path} is readable by others; chmod 600 it")
        try:
            keys = {str(k): base64.b64decode(v, validate=True) for k, v in raw["keys"].items()}
            ring = cls(keys, str(raw["active"]), base64.b64decode(raw["lookup"], validate=True), path)
        except (KeyError, TypeError, AttributeError, ValueError):
            raise KeyFileError(f"key file {path} is malformed (want active, keys, lookup)") from None
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

    def save(self, path: Path | None = None) -> None:
        path = path or self.path
        if path is None:
            raise KeyFileError("no path to save the key ring to")
        path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({
            "active": self.active_id,
            "keys": {k: base64.b64encode(v).decode() for k, v in self.keys.items()},
            "lookup": base64.b64encode(self.lookup_key).decode(),
        }, indent=2)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        self.path = path

    def add_key(self, activate: bool = True) -> str:
        """A new master key; new writes use it once active. Old rows are re-sealed by `rotate`."""
        key_id = new_key_id()
        while key_id in self.keys:
            key_id = new_key_id()
        self.keys[key_id] = secrets.token_bytes(KEY_BYTES)
        if activate:
            self.active_id = key_id
        return key_id

    # -- using ------------------------------------------------------------------
    def lookup_hash(self, number: str) -> bytes:
        """The keyed hash stored beside an encrypted number, for equality lookups."""
        return hmac.new(self.lookup_key, b"number:" + number.encode(), hashlib.sha256).digest()

    def keyed_digest(self, purpose: str, data: bytes) -> str:
        """A keyed hex digest of `data` (e.g. a request body holding numbers)."""
        return hmac.new(self.lookup_key, purpose.encode() + b":" + data, hashlib.sha256).hexdigest()

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


def new_key_id() -> str:
    return "k" + datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S") + secrets.token_hex(2)


def number_context(table: str, row_id: object, column: str) -> str:
    """Associated data binding a sealed number to its row and column: a
    ciphertext copied into another row does not open there."""
    return f"{table}:{row_id}:{column}"


def recording_key_context(recording_id: object) -> bytes:
    """Associated data binding a wrapped recording key to its recording."""
    return f"recording-key:{recording_id}".encode()
