"""Seal the recordings stored as plaintext before sealing existed.

A pass walks the recordings still marked plaintext, in bounded batches, and
for each: seals the file beside it under a fresh data key, records the sealed
path and the wrapped key in one transaction (when two sealers race, the first
to record counts and the other removes its own file), then removes the
plaintext. A recording shredded before it was sealed is sealed and its key
dropped at once: that is how its plaintext goes (the purge and erasure do
this as soon as they shred one, `retire_shredded`; the pass catches any they
could not, e.g. a process killed in between). Idempotent (a rerun finds
nothing to do); until a recording is sealed, the API still serves its
plaintext file. Run by `masking recordings seal` and once at service start.
"""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from bridge.clock import utcnow
from bridge.logs import get_logger
from bridge.recordings import seal_recording, sealed_path
from bridge.store import Store
from bridge.store.errors import StoreUnavailable

log = get_logger("bridge.recordings")
BATCH = 20
RETRY_SECONDS = 30.0


@dataclass
class SealReport:
    sealed: int = 0
    skipped: int = 0  # plaintext missing or changed (left as it is, logged), or sealed by another pass meanwhile


async def seal_stored_recordings(store: Store, batch: int = BATCH, pause: float = 0.0) -> SealReport:
    """One pass over the plaintext recordings, `batch` rows at a time, `pause`
    seconds between batches (so a service's calls keep the disk)."""
    report, after = SealReport(), uuid.UUID(int=0)
    while rows := await store.recordings.unsealed(after, batch):
        for row in rows:
            after = row["id"]
            if await _seal_one(store, row):
                report.sealed += 1
            else:
                report.skipped += 1
        await asyncio.sleep(pause)
    return report


async def seal_in_background(store: Store, batch: int = BATCH, pause: float = 0.2) -> None:
    """The service's pass at start, retried while the database is unavailable."""
    while True:
        try:
            report = await seal_stored_recordings(store, batch, pause)
        except StoreUnavailable:
            await asyncio.sleep(RETRY_SECONDS)
            continue
        except Exception as exc:  # a background task: say why it stopped
            log.error("recordings.seal_failed", error=type(exc).__name__)
            return
        if report.sealed or report.skipped:
            log.info("recordings.sealed", sealed=report.sealed, skipped=report.skipped)
        return


def plaintext_retirer(store: Store) -> Callable[[list[dict]], Awaitable[None]]:
    """What a purge or an erasure does with the plaintext recordings a committed
    batch shredded (`retire=` of `store.retention.purge`, `store.erasure.erase`):
    their files go now, not at the next sealing pass, the way that pass does it
    (sealed under a key that is not kept, then the plaintext removed)."""
    async def retire(rows: list[dict]) -> None:
        for row in rows:
            await retire_shredded(store, {**row, "shredded_at": utcnow()})

    return retire


async def retire_shredded(store: Store, row: dict) -> bool:
    """A plaintext recording just shredded (purge, erasure): its plaintext goes
    now, as this pass would remove it later (`row` as `unsealed_recordings`
    lists it). False if the file was already gone, or another pass sealed it."""
    return await _seal_one(store, row)


async def _seal_one(store: Store, row: dict) -> bool:
    recording_id, plain = row["id"], Path(row["storage_path"])
    dest = sealed_path(plain)
    try:
        key, digest = await asyncio.to_thread(seal_recording, plain, dest, recording_id, store.keys)
    except OSError as exc:  # gone: the API answers recording_gone, as before
        log.warning("recording.seal_skipped", recording_id=str(recording_id), error=type(exc).__name__)
        return False
    if digest.sha256 != row["sha256"] and row["shredded_at"] is None:
        dest.unlink(missing_ok=True)
        log.error("recording.seal_refused", recording_id=str(recording_id), reason="sha256 differs from the row")
        return False
    try:
        counted = await store.recordings.mark_sealed(recording_id, str(dest), key)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    (plain if counted else dest).unlink(missing_ok=True)
    return counted
