"""Soak: many calls with random outcomes while faults are injected.

Not a CI test (it takes minutes). Starts its own PostgreSQL cluster, Asterisk,
service and a `masking serve-agi` standby (so calls arriving while the service
is dead take the fallback), then places --calls calls at --rate per second: the
caller talks a random 1 to 6 s; the counterpart answers (70%), is busy (15%) or
never answers (15%). Every --fault-every seconds it injects, in turn: the ARI
websocket dropped, the service SIGKILLed and restarted, PostgreSQL crashed and
restarted. At the end it checks, at the far end and in the database: no channel
or bridge left in Asterisk, no call row left unfinished, every answered recorded
call with exactly one recording that decrypts to the audio its sha256 names.
With --webhook the session also sends its call events to a receiver on
loopback, and every call the service's ARI path finished must have reached it
as `call.completed` (events written while the database was down are spooled
with their row and replayed; a killed service's batch is sent again).

    .venv/bin/python -m bench.soak --calls 1000 --rate 8 --fault-every 6 [--webhook]
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

from bench.masked_calls import WebhookReceiver
from bridge.privacy.crypto import CryptoError, KeyRing, recording_key_context
from bridge.recordings.sealed import SealedFileError, plaintext_size, read_range
from bridge.sessions.models import SessionRequest
from bridge.store import Store
from tests.support.postgres import Cluster
from tests.support.sipp import PCAP_DIR, Sipp
from tests.support.stack import REPO, Stack, running_stack

SCENARIOS = Path(__file__).resolve().parent / "sipp"
VIRTUAL, CALLER, COUNTERPART = "+6562000010", "+6592000010", "+6582000010"


def scenario(name: str, workdir: Path) -> Path:
    path = workdir / name
    path.write_text((SCENARIOS / name).read_text())
    (workdir / "pcap").mkdir(exist_ok=True)
    if not (workdir / "pcap" / "g711a.pcap").exists():
        (workdir / "pcap" / "g711a.pcap").symlink_to(PCAP_DIR / "g711a.pcap")
    return path


class Faults:
    def __init__(self, stack: Stack, cluster: Cluster):
        self.stack, self.cluster = stack, cluster
        self.kinds = itertools.cycle([self.drop_ari, self.kill_service, self.crash_database])
        self.log: list[tuple[str, float]] = []

    def inject(self) -> None:
        fault = next(self.kinds)
        started = time.monotonic()
        fault()
        self.log.append((fault.__name__, time.monotonic() - started))
        print(f"  {datetime.now():%H:%M:%S} {fault.__name__}: recovered in {self.log[-1][1]:.2f} s", flush=True)

    def drop_ari(self) -> None:
        urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{self.stack.settings.http_port}/debug/ari/drop", method="POST"), timeout=5)

    def kill_service(self) -> None:
        self.stack.service.kill()
        self.stack.service.wait()
        self.stack.service = None
        self.stack.start_service()

    def crash_database(self) -> None:
        self.cluster.stop("immediate")
        time.sleep(2)
        self.cluster.start()


async def provision(dsn: str, keys, webhook_url: str | None = None) -> None:
    store = await Store.connect(dsn, keys)
    try:
        await store.numbers.add(VIRTUAL)
        await store.sessions.create(SessionRequest(CALLER, COUNTERPART, ttl_seconds=86400, record=True,
                                                   purpose="delivery_order", webhook_url=webhook_url))
    finally:
        await store.close()


async def outbox_settled(dsn: str, keys) -> tuple[list[str], dict[str, int]]:
    """(ids of the ARI path's finished calls of the session, webhook events not
    delivered yet by status). A call rejected before its session was known
    (the database down at its lookup) has no session to report to."""
    store = await Store.connect(dsn, keys)
    try:
        calls = await store.pool.fetch("SELECT id FROM calls WHERE path = 'ari' AND disposition <> 'in_progress'"
                                       " AND session_id IS NOT NULL")
        return [str(r["id"]) for r in calls], await store.outbox.counts()
    finally:
        await store.close()


async def verify(dsn: str, keys) -> dict:
    store = await Store.connect(dsn, keys)
    try:
        async with store.pool.acquire() as conn:
            by_disposition = dict(await conn.fetch(
                "SELECT disposition, count(*) FROM calls GROUP BY disposition ORDER BY 1"))
            by_path = dict(await conn.fetch("SELECT path, count(*) FROM calls GROUP BY path"))
            recordings = await conn.fetch(
                "SELECT c.id AS call_id, r.id, r.storage_path, r.sha256, r.bytes, r.sealed, k.key_id, k.wrapped_key"
                " FROM calls c LEFT JOIN recordings r ON r.call_id = c.id"
                " LEFT JOIN recording_keys k ON k.recording_id = r.id"
                " WHERE c.disposition = 'answered' AND c.recorded")
            duplicates = await conn.fetchval(
                "SELECT count(*) FROM (SELECT call_id FROM recordings GROUP BY call_id HAVING count(*) > 1) d")
    finally:
        await store.close()
    missing = sum(1 for r in recordings if r["storage_path"] is None)
    corrupt = sum(1 for r in recordings if r["storage_path"] is not None and not verified(keys, r))
    return {"by_disposition": by_disposition, "by_path": by_path, "answered_recorded": len(recordings),
            "recordings_missing": missing, "recordings_corrupt": corrupt, "recordings_duplicated": duplicates,
            "missing_ids": [str(r["call_id"]) for r in recordings if r["storage_path"] is None]}


def verified(keys: KeyRing, recording) -> bool:
    """Whether a recording opens with its wrapped key (recordings are sealed at
    rest, bridge/recordings/sealed.py) into the plaintext its row describes:
    size and sha256 of the audio, not of the file on disk."""
    path = Path(recording["storage_path"])
    try:
        if not recording["sealed"]:
            audio = path.read_bytes()
        else:
            dek = keys.open(recording["key_id"], recording["wrapped_key"], recording_key_context(recording["id"]))
            audio = b"".join(read_range(path, dek, recording["id"], 0, plaintext_size(path)))
    except (OSError, ValueError, TypeError, CryptoError, SealedFileError):
        return False
    return len(audio) == recording["bytes"] and hashlib.sha256(audio).hexdigest() == recording["sha256"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=8)
    parser.add_argument("--fault-every", type=float, default=6)
    parser.add_argument("--webhook", action="store_true", help="the session sends its call events to a receiver")
    args = parser.parse_args()
    events = WebhookReceiver() if args.webhook else None

    workdir = Path(tempfile.mkdtemp(prefix="masking-soak-"))
    cluster = Cluster()
    cluster.start()
    try:
        with running_stack(workdir, admin_dsn=cluster.dsn(), rtp_ports=1200, MASKING_DIAL_TIMEOUT="3",
                           MASKING_LOG_LEVEL="info", MASKING_DB_TIMEOUT="1") as stack:
            asyncio.run(provision(stack.dsn, stack.keys, events.url if events else None))
            # The standby holds the FastAGI port; the service then runs without its own.
            stack.stop_service()
            standby = subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve-agi"], cwd=REPO,
                                       env={**os.environ, **stack.env}, stdout=open(workdir / "agi.log", "wb"),
                                       stderr=subprocess.STDOUT)
            time.sleep(1)
            stack.start_service()
            uas = Sipp(workdir, scenario("uas_random.xml", workdir), ["-rtp_echo", "-timeout", "0"], "soak-uas",
                       port=stack.counterpart_port)
            uas.command[uas.command.index("-m") + 1] = str(args.calls)
            uas.start()
            time.sleep(0.3)
            uac = Sipp(workdir, scenario("uac_random.xml", workdir),
                       ["-s", VIRTUAL, "-key", "caller", CALLER, "-r", str(args.rate), "-l", "200",
                        "-recv_timeout", "30000", stack.sip_target], "soak-uac")
            uac.command[uac.command.index("-m") + 1] = str(args.calls)
            faults = Faults(stack, cluster)
            started = time.monotonic()
            uac.start()
            print(f"soak: {args.calls} calls at {args.rate}/s, a fault every {args.fault_every} s", flush=True)
            next_fault = started + args.fault_every
            while uac.process.poll() is None:
                if time.monotonic() >= next_fault:
                    faults.inject()
                    next_fault = time.monotonic() + args.fault_every
                time.sleep(0.2)
            elapsed = time.monotonic() - started
            uas.wait(60)
            time.sleep(8)  # last teardowns and recordings
            spool = stack.settings.state_dir / "spool"
            deadline = time.monotonic() + 60
            while any(p.stat().st_size for p in spool.glob("*.jsonl")) and time.monotonic() < deadline:
                time.sleep(1)  # writes kept during the database crash, being replayed
            channels, bridges = stack.leftovers(20)
            result = asyncio.run(verify(stack.dsn, stack.keys))
            if events:
                deadline = time.monotonic() + 90  # a killed service's claims expire after 60 s
                while time.monotonic() < deadline:
                    finished, backlog = asyncio.run(outbox_settled(stack.dsn, stack.keys))
                    if not backlog.get("pending"):
                        break
                    time.sleep(2)
            standby.terminate()
            standby.wait(20)
    finally:
        cluster.destroy()
    calls_with_rows = sum(result["by_disposition"].values())
    print(f"placed {args.calls} calls in {elapsed:.0f} s with {len(faults.log)} faults "
          f"({', '.join(f'{k}: {sum(1 for f, _ in faults.log if f == k)}' for k in ('drop_ari', 'kill_service', 'crash_database'))})")
    print(f"rows: {calls_with_rows} ({result['by_disposition']}), by path {result['by_path']}")
    print(f"unfinished rows: {result['by_disposition'].get('in_progress', 0)}; "
          f"left in Asterisk: {len(channels)} channels, {len(bridges)} bridges")
    print(f"answered recorded calls: {result['answered_recorded']}; without recording: "
          f"{result['recordings_missing']}; not decrypting to its sha256: {result['recordings_corrupt']}; "
          f"with two recordings: {result['recordings_duplicated']}")
    if result["missing_ids"]:
        print(f"  without recording: {', '.join(result['missing_ids'])}")
    unreported = []
    if events:
        completed = {call_id for _, kind, call_id in events.got if kind == "call.completed"}
        unreported = [call_id for call_id in finished if call_id not in completed]
        ids = [event_id for event_id, _, _ in events.got]
        print(f"webhooks: {len(set(ids))} events received ({len(ids) - len(set(ids))} sent again), "
              f"{len(finished)} calls of the session finished on the ARI path, {len(unreported)} without"
              f" call.completed; "
              f"not delivered: {backlog}")
        if unreported:
            print(f"  without call.completed: {', '.join(unreported)}")
    print(f"work files: {workdir}")
    ok = (not channels and not bridges and not result["by_disposition"].get("in_progress")
          and not result["recordings_missing"] and not result["recordings_corrupt"]
          and not result["recordings_duplicated"] and not unreported)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
