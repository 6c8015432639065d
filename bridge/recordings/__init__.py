"""Move a finished recording out of Asterisk into the project's store, verified.

Asterisk's spool is not storage: a recording is downloaded over ARI into the
configured directory, checked (size against what Asterisk sent, a well-formed
WAV header, sha256 of what is on disk), sealed under a data key of its own
(`sealed.py`; the plaintext download is removed), kept (its row, with the
wrapped key, safe in the database or the spool), and only then deleted from
Asterisk. Where this host shares Asterisk's disk (`shared`: its recording
spool as seen here), the file is sealed straight from the spool and removed
there: no HTTP round trip, no plaintext copy. Size, duration and sha256 are
those of the plaintext audio.
"""
from __future__ import annotations

import asyncio
import hashlib
import secrets
import struct
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Awaitable, Callable

from bridge.ari import AriClient, AriError, AriNotFound
from bridge.files import open_private
from bridge.privacy.crypto import KeyRing, Sealed, recording_key_context
from bridge.recordings.sealed import PlaintextDigest, new_dek, seal_file


class RecordingInvalid(Exception):
    """The downloaded file is not what Asterisk sent, or not a usable WAV."""


class RecordingIncomplete(RecordingInvalid):
    """Asterisk is still writing the file (its WAV header is not final yet)."""


class NotKept(Exception):
    """The recording's row could not be made safe (`Keep`): Asterisk's copy
    stays for the next collection; the sealed file, whose key nobody holds, goes."""


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


@dataclass(frozen=True)
class StoredRecording:
    path: Path  # the sealed file
    format: str
    bytes: int  # size, duration and sha256 of the plaintext audio
    duration_seconds: float
    sha256: str
    id: uuid.UUID
    key: Sealed  # its data key, wrapped by the active master key


def sealed_path(plain: Path) -> Path:
    """Where `plain` is sealed to: a name of its own per sealing, so two
    sealers of one file never overwrite each other (the row names the one that counts)."""
    return plain.with_name(f"{plain.name}.{secrets.token_hex(4)}.sealed")


def remove_unkept(kept: Path) -> int:
    """Remove the other sealings of the recording sealed at `kept`: a process
    killed between sealing and keeping one left it with no row, so no key
    opens it (its data key died with the process). Called where a recording
    was collected again after such a death, never on a call's own path (a
    listing of the day's folder)."""
    stem = kept.name.rsplit(".", 2)[0]  # `<call id>.<fmt>` of `<call id>.<fmt>.<token>.sealed`
    removed = 0
    for path in kept.parent.glob(f"{stem}.*.sealed"):
        if path != kept:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def seal_recording(src: Path, dest: Path, recording_id: uuid.UUID, keys: KeyRing) -> tuple[Sealed, PlaintextDigest]:
    """Seal `src` into `dest` under a fresh data key; returns the key wrapped
    by the active master key (the plain key is dropped here) and what was sealed."""
    dek = new_dek()
    digest = seal_file(src, dest, dek, recording_id)
    return keys.seal(dek, recording_key_context(recording_id)), digest


def storage_path(root: Path, call_id: uuid.UUID, started_at: datetime, fmt: str) -> Path:
    """`root/2026/11/25/<call id>.wav`: one folder a day keeps listings small."""
    return root / f"{started_at:%Y/%m/%d}" / f"{call_id}.{fmt}"


async def download(ari: AriClient, name: str, partial: Path, fmt: str) -> tuple[int, str, float]:
    """Asterisk's stored recording `name` into `partial`, checked against what
    Asterisk sent; returns (bytes, sha256 of the bytes received, duration)."""
    size, sent_sha, content_length = await ari.download_stored_recording(name, partial)
    if content_length is not None and size != content_length:
        raise RecordingInvalid(f"downloaded {size} bytes, Asterisk announced {content_length}")
    return size, sent_sha, finished_duration(partial, size, fmt)


def finished_duration(path: Path, size: int, fmt: str) -> float:
    """The audio's duration (0 if not WAV); RecordingIncomplete while its
    writer has not closed it."""
    if fmt != "wav":
        return 0.0
    with open(path, "rb") as f:
        info = parse_wav_header(f.read(4096))
    if info.data_bytes == 0 and size > 44:
        # The writer fills in the sizes when it closes the file.
        raise RecordingIncomplete("the WAV header is not final yet")
    return info.duration_seconds


def in_spool(shared: Path | None, name: str, fmt: str) -> Path | None:
    """Asterisk's own file of recording `name`, where this host shares its spool."""
    if shared is None:
        return None
    path = shared / f"{name}.{fmt}"
    return path if path.is_file() else None


def seal_from_spool(src: Path, dest: Path, fmt: str, keys: KeyRing) -> StoredRecording:
    """Seal Asterisk's file `src` beside `dest` (left in place: it goes once
    the recording is kept). FileNotFoundError: taken meanwhile."""
    size = src.stat().st_size
    duration = finished_duration(src, size, fmt)
    recording_id, sealed = uuid.uuid4(), sealed_path(dest)
    key, digest = seal_recording(src, sealed, recording_id, keys)
    return StoredRecording(sealed, fmt, digest.bytes, duration, digest.sha256, recording_id, key)


def _removed(path: Path) -> bool:
    """Whether Asterisk's file is gone; False where this host may read its
    spool but not change it (another owner, a read-only mount): ARI deletes it."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


# Awaited once a recording is sealed, before Asterisk's copy is removed: it
# returns when the row naming the sealed file, with its wrapped key, is safe
# (in the database or the spool), and raises NotKept when it cannot be. A
# process killed before then leaves Asterisk's copy for the next collection;
# after, the row opens the file.
Keep = Callable[[StoredRecording], Awaitable[None]]


async def _keep(keep: Keep, stored: StoredRecording) -> None:
    try:
        await keep(stored)
    except NotKept:
        stored.path.unlink(missing_ok=True)
        raise


async def collect(ari: AriClient, name: str, dest: Path, fmt: str, keys: KeyRing, keep: Keep,
                  shared: Path | None = None) -> StoredRecording:
    """Move Asterisk's stored recording `name` into the store: verified,
    sealed beside `dest` (see `sealed_path`), kept (`keep`), removed from Asterisk."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if (local := in_spool(shared, name, fmt)) is not None:
        try:
            stored = await asyncio.to_thread(seal_from_spool, local, dest, fmt, keys)
        except FileNotFoundError:
            pass  # another process took it meanwhile: ARI says so below
        else:
            await _keep(keep, stored)
            if not _removed(local):
                await _delete_in_asterisk(ari, name)
            return stored
    partial = dest.with_suffix(dest.suffix + ".partial")
    try:
        size, sent_sha, duration = await download(ari, name, partial, fmt)
        recording_id, sealed = uuid.uuid4(), sealed_path(dest)
        # Sealing reads the download once: the sha256 it computes is of what is on disk.
        key, digest = await asyncio.to_thread(seal_recording, partial, sealed, recording_id, keys)
        if digest.sha256 != sent_sha:
            sealed.unlink(missing_ok=True)
            raise RecordingInvalid("sha256 of the file on disk differs from the bytes received")
    finally:
        partial.unlink(missing_ok=True)  # no plaintext stays behind, whatever happened
    stored = StoredRecording(sealed, fmt, size, duration, digest.sha256, recording_id, key)
    await _keep(keep, stored)
    await _delete_in_asterisk(ari, name)
    return stored


async def _delete_in_asterisk(ari: AriClient, name: str) -> None:
    try:
        await ari.delete_stored_recording(name)
    except AriError:
        pass  # already verified and stored; a leftover in the spool is harmless


async def when_complete(collect: Callable[[], Awaitable[StoredRecording]], within: float = 5.0,
                        every: float = 0.2) -> StoredRecording:
    """`collect()` once the file is complete. MixMonitor closes its files
    after its channel is gone, so the call may be over before they are final
    (a WAV header says when), or before they are there at all."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await collect()
        except (RecordingIncomplete, AriNotFound):
            if asyncio.get_running_loop().time() >= deadline:
                raise RecordingIncomplete(f"not complete after {within:.0f} s") from None
            await asyncio.sleep(every)


async def collect_stereo(ari: AriClient, names: tuple[str, str], dest: Path, keys: KeyRing, keep: Keep,
                         delays: tuple[int, int] = (0, 0), shared: Path | None = None) -> StoredRecording:
    """Take the two one-party recordings (WAV), merge them into one stereo
    file (`names[0]` left, `names[1]` right, aligned by `delays` samples), seal
    it beside `dest`, and remove both from Asterisk. Size, duration and sha256
    are the merged audio's."""
    from bridge.recordings.stereo import merge

    dest.parent.mkdir(parents=True, exist_ok=True)
    parts = [dest.with_suffix(f"{dest.suffix}.{side}.partial") for side in ("left", "right")]
    sources = [in_spool(shared, name, "wav") for name in names]
    merged = dest.with_suffix(dest.suffix + ".partial")
    try:
        for i, (name, part) in enumerate(zip(names, parts)):
            if sources[i] is not None:
                finished_duration(sources[i], sources[i].stat().st_size, "wav")
                continue  # merged from Asterisk's own file
            _, sent_sha, _ = await download(ari, name, part, "wav")
            if await asyncio.to_thread(sha256_file, part) != sent_sha:
                raise RecordingInvalid("sha256 of the file on disk differs from the bytes received")
            sources[i] = part
        try:
            audio, duration = await asyncio.to_thread(merge, sources[0].read_bytes(), sources[1].read_bytes(), delays)
        except ValueError as exc:  # not WAV, or the two do not match
            raise RecordingInvalid(f"cannot merge the two channels: {exc}") from None
        with open_private(merged) as out:
            out.write(audio)
        recording_id, sealed = uuid.uuid4(), sealed_path(dest)
        key, digest = await asyncio.to_thread(seal_recording, merged, sealed, recording_id, keys)
    finally:
        for path in (*parts, merged):
            path.unlink(missing_ok=True)  # no plaintext stays behind, whatever happened
    stored = StoredRecording(sealed, "wav", len(audio), duration, digest.sha256, recording_id, key)
    await _keep(keep, stored)
    for name, source, part in zip(names, sources, parts):
        if source == part or not _removed(source):  # downloaded, or Asterisk's user owns its folder
            await _delete_in_asterisk(ari, name)
    return stored
