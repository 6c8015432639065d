"""`masking recordings seal`: encrypt the recordings stored before sealing existed.

Idempotent and in batches, so an interrupted run is simply started again.
"""
from __future__ import annotations

from bridge.cli.common import UsageError, command, group, open_store
from bridge.config import Settings


def add_commands(sub) -> None:
    recordings = group(sub, "recordings", "recordings at rest")
    p = command(recordings, "seal", cmd_recordings_seal,
                "encrypt recordings stored before sealing existed (idempotent, in batches)")
    p.add_argument("--batch", type=int, default=20, help="recordings per batch")


async def cmd_recordings_seal(settings: Settings, args) -> int:
    from bridge.recordings.backfill import seal_stored_recordings

    if args.batch < 1:
        raise UsageError("--batch must be at least 1")
    async with open_store(settings) as store:
        report = await seal_stored_recordings(store, args.batch)
    print(f"sealed {report.sealed} recording(s), skipped {report.skipped} (see the log)")
    return 0
