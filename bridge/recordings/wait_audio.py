"""Wait audio: what a caller hears instead of ringback while the counterpart rings.

A business uploads a WAV; it is converted for Asterisk (`convert.py`), kept in
the recording store as the canonical copy, and placed where Asterisk reads this
project's sounds (`MASKING_ASTERISK_SOUNDS_DIR`, `masking/wait/<id>.wav`), so
the call flow plays it as `sound:masking/wait/<id>`. At start the service puts
back any copy Asterisk's side lost (a rebuilt Asterisk, a fresh container).
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import uuid
from pathlib import Path

from bridge.config import Settings
from bridge.logs import get_logger
from bridge.privacy.audit import Actor
from bridge.recordings.convert import convert_off_loop
from bridge.store import Store
from bridge.store.errors import StoreError

log = get_logger("bridge.recordings")
# Conversions at once in this process; more uploads wait their turn (each in a child process).
CONVERSIONS = asyncio.Semaphore(2)


class SoundsDirUnknown(Exception):
    """No setting says where Asterisk reads our sounds, and no local Asterisk shows it."""


def sound_uri(audio_id: uuid.UUID) -> str:
    return f"sound:masking/wait/{audio_id}"


def asterisk_copy(settings: Settings, audio_id: uuid.UUID) -> Path:
    return sounds_dir(settings) / "wait" / f"{audio_id}.wav"


def sounds_dir(settings: Settings) -> Path:
    """Where Asterisk reads `masking/...` sounds: the setting, or for the
    Asterisk this project runs itself, its resolved sounds directory."""
    if str(settings.asterisk_sounds_dir) not in ("", "."):
        return settings.asterisk_sounds_dir
    from bridge.stack.asterisk import AsteriskNotInstalled, find_install

    try:
        install = find_install(settings.asterisk.asterisk_root)
    except AsteriskNotInstalled:
        raise SoundsDirUnknown("set MASKING_ASTERISK_SOUNDS_DIR to where Asterisk reads masking/ sounds") from None
    return install.resolved_host_path(install.data_dir + "/sounds/en") / "masking"


async def add_wait_audio(store: Store, settings: Settings, upload: bytes, name: str, by: Actor,
                         account_id: uuid.UUID | None = None) -> dict:
    """Convert, store and register an upload (UnsupportedAudio if it cannot be,
    or not within `MASKING_WAIT_AUDIO_CONVERT_SECONDS`)."""
    async with CONVERSIONS:
        converted, seconds = await convert_off_loop(upload, settings.wait_audio_convert_seconds)
    audio_id = uuid.uuid4()
    canonical = Path(settings.recording_dir) / "wait-audio" / f"{audio_id}.wav"
    await asyncio.to_thread(_write, canonical, converted)
    await asyncio.to_thread(_place, canonical, asterisk_copy(settings, audio_id))
    row = await store.wait_audio.add(audio_id, name, str(canonical), len(converted), round(seconds, 3),
                                     hashlib.sha256(converted).hexdigest(), account_id)
    await store.audit.append_by(by, "wait_audio.added", "wait_audio", str(audio_id), details={"name": name})
    log.info("wait_audio.added", wait_audio_id=str(audio_id), seconds=round(seconds, 1))
    return row


async def delete_wait_audio(store: Store, settings: Settings, audio_id: uuid.UUID, by: Actor,
                            account_id: uuid.UUID | None = None) -> None:
    row = await store.wait_audio.delete(audio_id, account_id)
    await store.audit.append_by(by, "wait_audio.deleted", "wait_audio", str(audio_id), details={"name": row["name"]})
    for path in (Path(row["storage_path"]), asterisk_copy(settings, audio_id)):
        path.unlink(missing_ok=True)


async def sync_wait_audio(store: Store, settings: Settings) -> None:
    """Put back the copies Asterisk reads, from the canonical ones."""
    try:
        rows = await store.wait_audio.list()
        for row in rows:
            target = asterisk_copy(settings, row["id"])
            if not target.exists() and Path(row["storage_path"]).exists():
                await asyncio.to_thread(_place, Path(row["storage_path"]), target)
    except (StoreError, OSError, SoundsDirUnknown) as exc:
        log.error("wait_audio.sync_failed", error=str(exc))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def _place(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target.with_name(target.name + ".tmp"))
    os.replace(target.with_name(target.name + ".tmp"), target)
