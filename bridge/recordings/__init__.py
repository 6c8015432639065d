"""Move a finished recording out of Asterisk into the project's store, verified.

Asterisk's spool is not storage: a recording is downloaded over ARI into the
configured directory, checked (size against what Asterisk sent, sha256 of what
is on disk, a well-formed WAV header), and only then deleted from Asterisk.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bridge.ari import AriClient, AriError


class RecordingInvalid(Exception):
    """The downloaded file is not what Asterisk sent, or not a usable WAV."""


class RecordingIncomplete(RecordingInvalid):
    """Asterisk is still writing the file (its WAV header is not final yet)."""


@dataclass(frozen=True)
class WavInfo:
    channels: int
    sample_rate: int
    bits_per_sample: int
    data_bytes: int

    @property
    def duration_seconds(self) -> float:
        frame = self.channels * self.bits_per_sample // 8
        return self.data_bytes / (frame * self.sample_rate) if frame and self.sample_rate else 0.0


def parse_wav_header(blob: bytes) -> WavInfo:
    """Read the fmt and data chunks of a RIFF/WAVE file (the first few KB suffice)."""
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise RecordingInvalid("not a RIFF/WAVE file")
    offset, fmt = 12, None
    while offset + 8 <= len(blob):
        chunk_id, size = struct.unpack_from("<4sI", blob, offset)
        body = offset + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(blob):
                raise RecordingInvalid("truncated fmt chunk")
            _, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", blob, body)
            fmt = (channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise RecordingInvalid("data chunk before fmt chunk")
            return WavInfo(fmt[0], fmt[1], fmt[2], size)
        offset = body + size + (size & 1)
    raise RecordingInvalid("no data chunk")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _sync_and_hash(path: Path) -> str:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    return sha256_file(path)


@dataclass(frozen=True)
class StoredRecording:
    path: Path
    format: str
    bytes: int
    duration_seconds: float
    sha256: str


def storage_path(root: Path, call_id: uuid.UUID, started_at: datetime, fmt: str) -> Path:
    """`root/2026/11/25/<call id>.wav`: one folder a day keeps listings small."""
    return root / f"{started_at:%Y/%m/%d}" / f"{call_id}.{fmt}"


async def collect(ari: AriClient, name: str, dest: Path, fmt: str) -> StoredRecording:
    """Download Asterisk's stored recording `name` to `dest`, verify it, delete it there."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(dest.suffix + ".partial")
    size, sent_sha, content_length = await ari.download_stored_recording(name, partial)
    if content_length is not None and size != content_length:
        raise RecordingInvalid(f"downloaded {size} bytes, Asterisk announced {content_length}")
    on_disk_sha = await asyncio.to_thread(_sync_and_hash, partial)
    if on_disk_sha != sent_sha:
        raise RecordingInvalid("sha256 of the file on disk differs from the bytes received")
    duration = 0.0
    if fmt == "wav":
        with open(partial, "rb") as f:
            info = parse_wav_header(f.read(4096))
        if info.data_bytes == 0 and size > 44:
            # The writer fills in the sizes when it closes the file.
            partial.unlink(missing_ok=True)
            raise RecordingIncomplete("the WAV header is not final yet")
        duration = info.duration_seconds
    os.replace(partial, dest)
    try:
        await ari.delete_stored_recording(name)
    except AriError:
        pass  # already verified and stored; a leftover in the spool is harmless
    return StoredRecording(dest, fmt, size, duration, on_disk_sha)
