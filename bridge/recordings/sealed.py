"""Recordings at rest: a chunked AES-256-GCM file format, readable by range.

    header   magic "MSKREC", version (1 byte), chunk size (4 bytes, big endian)
    chunk i  AES-GCM(dek, nonce = 4 zero bytes || i as 8 bytes, plaintext chunk i,
                     associated data = header || recording id || i || last-chunk flag)

Every chunk but the last holds `chunk size` plaintext bytes; the last holds
the rest (an empty file is one empty last chunk). A counter nonce is safe
because every data key (DEK) seals exactly one file. The associated data makes
a chunk open only at its own index, in its own recording, with its own
last-chunk flag: reordered chunks, a file cut at a chunk boundary, and a file
copied under another recording all fail to authenticate. A range of plaintext
is served by opening only the chunks that hold it.

Pure file work, no database and no master key: callers hold the DEK.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import struct
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"MSKREC"
VERSION = 1
CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
TAG_BYTES = 16
DEK_BYTES = 32
HEADER = struct.Struct(">6sBI")


class SealedFileError(Exception):
    """Base of the errors reading a sealed file; messages never carry key material."""


class NotSealed(SealedFileError):
    """The file does not start with the sealed-recording header (a plaintext recording?)."""


class UnsupportedVersion(SealedFileError):
    """Written by a newer format version than this code reads."""


class SealedFileCorrupt(SealedFileError):
    """Impossible layout, or a chunk that does not authenticate: tampered, truncated,
    reordered, sealed for another recording, or opened with the wrong key."""


@dataclass(frozen=True)
class PlaintextDigest:
    """What `seal_file` read: the size and sha256 of the plaintext it sealed."""

    bytes: int
    sha256: str


def new_dek() -> bytes:
    return secrets.token_bytes(DEK_BYTES)


def seal_file(src: Path, dest: Path, dek: bytes, recording_id: uuid.UUID,
              chunk_size: int = CHUNK_SIZE) -> PlaintextDigest:
    """Seal `src` into `dest` (written to a temporary file, fsynced, renamed:
    `dest` is either absent or complete)."""
    if not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk size must be between 1 and {MAX_CHUNK_SIZE}")
    header = HEADER.pack(MAGIC, VERSION, chunk_size)
    cipher = AESGCM(dek)
    digest, total = hashlib.sha256(), 0
    with open(src, "rb") as plain:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(header)
                chunk, index = plain.read(chunk_size), 0
                while True:
                    following = plain.read(chunk_size)
                    last = not following  # read ahead: a full final chunk is still flagged last
                    out.write(cipher.encrypt(_nonce(index), chunk, _aad(header, recording_id, index, last)))
                    digest.update(chunk)
                    total += len(chunk)
                    if last:
                        break
                    chunk, index = following, index + 1
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    _fsync_directory(dest.parent)
    return PlaintextDigest(total, digest.hexdigest())


def plaintext_size(path: Path) -> int:
    """The plaintext size, from the header and the file size alone (the chunks
    are authenticated as `read_range` reads them)."""
    with open(path, "rb") as f:
        chunk_size = _parse_header(f.read(HEADER.size))
        return _layout(os.fstat(f.fileno()).st_size, chunk_size)[1]


def read_range(path: Path, dek: bytes, recording_id: uuid.UUID, start: int, end: int) -> Iterator[bytes]:
    """Plaintext bytes `start` to `end` (exclusive), in pieces of at most one
    chunk, opening only the chunks that hold them. A generator: errors are
    raised by the first `next()`, or by the piece whose chunk fails."""
    with open(path, "rb") as f:
        header = f.read(HEADER.size)
        chunk_size = _parse_header(header)
        chunks, size = _layout(os.fstat(f.fileno()).st_size, chunk_size)
        if not 0 <= start <= end <= size:
            raise ValueError(f"range {start}-{end} is outside the plaintext (0-{size})")
        if start == end:
            return
        cipher, stride = AESGCM(dek), chunk_size + TAG_BYTES
        for index in range(start // chunk_size, (end - 1) // chunk_size + 1):
            f.seek(HEADER.size + index * stride)
            sealed = f.read(stride)
            try:
                plain = cipher.decrypt(_nonce(index), sealed,
                                       _aad(header, recording_id, index, index == chunks - 1))
            except InvalidTag:
                raise SealedFileCorrupt(f"chunk {index} of {path.name} does not authenticate") from None
            offset = index * chunk_size
            yield plain[max(start - offset, 0):min(end - offset, len(plain))]


def _parse_header(header: bytes) -> int:
    if len(header) < HEADER.size or not header.startswith(MAGIC):
        raise NotSealed("not a sealed recording")
    _, version, chunk_size = HEADER.unpack(header)
    if version != VERSION:
        raise UnsupportedVersion(f"sealed recording format version {version}, this code reads {VERSION}")
    if not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise SealedFileCorrupt(f"impossible chunk size {chunk_size}")
    return chunk_size


def _layout(file_size: int, chunk_size: int) -> tuple[int, int]:
    """(number of chunks, plaintext size) of a sealed file of `file_size` bytes."""
    stride = chunk_size + TAG_BYTES
    full, rest = divmod(file_size - HEADER.size, stride)
    if full < 0 or (full == 0 and rest < TAG_BYTES) or 0 < rest < TAG_BYTES:
        raise SealedFileCorrupt("the file size does not fit the sealed layout (truncated?)")
    if rest == 0:
        return full, full * chunk_size
    return full + 1, full * chunk_size + rest - TAG_BYTES


def _nonce(index: int) -> bytes:
    return struct.pack(">4xQ", index)


def _aad(header: bytes, recording_id: uuid.UUID, index: int, last: bool) -> bytes:
    return header + recording_id.bytes + struct.pack(">QB", index, last)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
