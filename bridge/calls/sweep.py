"""Nothing of a recording stays outside the sealed store.

A process killed mid-download leaves a `.partial` plaintext file; a failed
delete or a failed collection leaves Asterisk's own WAV in its spool, and the
FastAGI path never tries a collection twice. The sweep, at start and on a
timer (MASKING_RECORDING_SWEEP_SECONDS), finds both:
- a `.partial` (or an unfinished sealing's temporary file) older than
  `GRACE_SECONDS` is removed: its audio is still in Asterisk's spool, or
  already sealed;
- a recording of ours in Asterisk's spool is sealed into the store when its
  call ended recorded without a recording row (either path), and deleted from
  the spool when the call has its recording already, or was not to be
  recorded; one of no known call is deleted once two sweeps at least
  `GRACE_SECONDS` apart found it unknown while no row write waited in the
  spool (its call's row may be on its way). A recording still being written,
  or of a call in progress (or being closed) in this process, is left alone.
  An ARI call's recording is sealed by `close_left_call` (unclosed.py),
  which also tells the business the call's end if its dead process did not;
  after the recordings, every call of this node it has not closed yet.

Before that, a FastAGI call whose caller's channel is gone while its row
still says `in_progress` is closed as `interrupted`: `h` runs `finish` on the
live channel, so the channel gone means `finish` never ran (the FastAGI
server was down or died) or its write waits in a spool (the database was down:
replayed later, it overwrites this), and without this its row and recording
would stay as they are for ever. Its recording, if the row says it was
recorded, is then collected by the same pass.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bridge.ari import AriError
from bridge.calls import ids
from bridge.calls.deps import CallDeps
from bridge.calls.unclosed import COLLECTABLE, close_left_call
from bridge.logs import get_logger
from bridge.store.errors import StoreUnavailable

log = get_logger("bridge.recordings")
GRACE_SECONDS = 600.0


@dataclass
class SweepReport:
    partials_removed: int = 0
    collected: int = 0
    deleted: int = 0
    left: int = 0  # live, in progress, or unknown for less than the grace
    fallback_closed: int = 0
    closed: int = 0  # calls of a dead process whose end is now told (unclosed.py)


@dataclass
class Sweeper:
    deps: CallDeps
    grace: float = GRACE_SECONDS
    unknown_since: dict[str, float] = field(default_factory=dict)  # name -> when first found unknown

    async def sweep(self) -> SweepReport:
        report = SweepReport(partials_removed=await asyncio.to_thread(
            remove_stale_partials, Path(self.deps.settings.recording_dir), self.grace),
            fallback_closed=await close_fallback_calls_left(self.deps))
        names = await self.deps.ari.stored_recordings()
        calls = {name: call_id for name in names if (call_id := ids.call_of_recording(name))}
        states = await self.deps.store.calls.recording_states(sorted(set(calls.values())))
        done: set[uuid.UUID] = set()
        for name, call_id in sorted(calls.items()):
            action = await self._decide(name, states.get(call_id), call_id in done)
            if action == "collect":
                report.collected += await close_left_call(self.deps, call_id)
                done.add(call_id)
            elif action == "delete":
                try:
                    await self.deps.ari.delete_stored_recording(name)
                    report.deleted += 1
                except AriError:
                    report.left += 1
            else:
                report.left += 1
        report.closed = await close_calls_left(self.deps)
        return report

    async def _decide(self, name: str, state: dict | None, collected: bool) -> str:
        if collected or await self.deps.ari.recording_is_live(name):
            return "leave"
        if state is not None and any(call.id == state["id"] for call in self.deps.active.values()):
            return "leave"  # its call (or a close of it) is at work in this process
        if state is None:
            first = self.unknown_since.setdefault(name, time.monotonic())
            spool_waiting = self.deps.spool is not None and len(self.deps.spool) > 0
            return "delete" if time.monotonic() - first >= self.grace and not spool_waiting else "leave"
        self.unknown_since.pop(name, None)
        if state["disposition"] == "in_progress":
            return "leave"
        if state["recordings"]:
            return "delete"  # sealed already: what is left is a copy a failed delete kept
        if state["recorded"] and state["disposition"] in COLLECTABLE:
            return "collect"
        return "delete"  # not to be recorded (opted out, not answered): nothing to keep


async def close_calls_left(deps: CallDeps) -> int:
    """Close this node's calls a dead process ended but did not close (also
    done at each reconciliation; here too, since one may fail for a while)."""
    closed = 0
    for call_id in await deps.store.calls.left_open(deps.node):
        if not any(call.id == call_id for call in deps.active.values()):
            closed += await close_left_call(deps, call_id)
    return closed


async def close_fallback_calls_left(deps: CallDeps) -> int:
    """Close the FastAGI calls of this node whose `finish` never ran."""
    closed = 0
    for row in await deps.store.calls.fallback_in_progress(deps.node):
        if await deps.ari.channel_exists(row["caller_channel_id"]):
            continue  # talking, or `finish` at work
        if await deps.store.calls.close_unfinished_fallback(row["id"]):
            log.warning("call.fallback_unfinished", call_id=str(row["id"]), disposition="interrupted")
            closed += 1
    return closed


def remove_stale_partials(root: Path, older_than: float) -> int:
    """Remove downloads and sealings a dead process left unfinished."""
    removed, cutoff = 0, time.time() - older_than
    if not root.exists():
        return 0
    for path in root.rglob("*"):
        unfinished = path.name.endswith(".partial") or (path.name.startswith(".") and path.name.endswith(".tmp"))
        try:
            if unfinished and path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


async def sweep_forever(deps: CallDeps, interval: float) -> None:
    """At start, then every `interval` seconds (0: at start only)."""
    sweeper = Sweeper(deps)
    while True:
        try:
            report = await sweeper.sweep()
            if any((report.partials_removed, report.collected, report.deleted, report.fallback_closed,
                    report.closed)):
                log.info("recordings.swept", partials_removed=report.partials_removed, collected=report.collected,
                         deleted=report.deleted, left=report.left, fallback_closed=report.fallback_closed,
                         closed=report.closed)
        except (StoreUnavailable, AriError) as exc:
            log.warning("recordings.sweep_postponed", error=type(exc).__name__)
        except Exception as exc:  # a background task: say why, and try again next time
            log.error("recordings.sweep_failed", error=type(exc).__name__)
        if interval <= 0:
            return
        await asyncio.sleep(interval)
