"""Benchmark: the masked call against plain Asterisk doing the same work, in
one Asterisk, one run, the same load (issue 16 item 1).

Paths, per step of concurrent calls:
- `plain`: the floor. The operator's dialplan (a local include) does what a
  masked, recorded call does, without us: `Progress`, `Playback(beep)`,
  `MixMonitor(..., b)`, `Dial(...,IgA(beep))`; unrecorded, only `Dial`. Calls
  come from 127.0.0.5 (recorded) or 127.0.0.6, which a local `identify` sends
  to those contexts.
- `agi`: the FastAGI fallback (`masking serve-agi` with the service
  stopped, as when no process holds the Stasis application): the dialplan
  plays the notices and records with MixMonitor, the fallback routes.
- `ari`: the service's ARI path, sessions recorded (notice `beep` both sides,
  MixMonitor started over AMI, sealed).
- `ari-snoop`: the same with `MASKING_RECORDING_TAP=snoop` (a snoop channel
  recorded over ARI), the design before MixMonitor.

Each path runs recorded (a recorded session: the notice to both parties,
then the recording) and not (a session without recording: no notice, the
counterpart dialed at once). Callers talk with real audio (SIPp pcap), the
counterpart echoes RTP. What is counted is at the far end: the counterpart's
answered INVITEs and, per path, recordings with audio (MixMonitor files for
`plain`; recording rows of answered calls for `ari` and `agi`). Times are on
the wire: the caller's INVITE sent to its 200 OK received, and post-dial delay
(the caller's INVITE sent to the counterpart's INVITE received; SIPp's message
logs, one clock). CPU seconds per call from /proc for Asterisk, the process
serving the path (the service, or `serve-agi`), and the PostgreSQL backends of
this stack's database, after --warmup calls on the freshly started process
(its pools, connections and lazily loaded code are not a call's cost); the
serving process's RSS per concurrent call from its peak over its idle size
(`bench.memory` measures memory per active call properly). Beside them, the
whole machine: every process's CPU per call (SIPp's and the kernel's
included) from /proc/stat, the hypervisor's steal, how busy both cores were,
and a calibration taken before each step (`bench.profile.calibration_ms`):
this VM's speed moves by half between hours, and with it every figure.

    .venv/bin/python -m bench.paths --concurrent 50 100 150 200

With `--perf DIR`, Asterisk is sampled by `perf` during each step, and its
CPU per call split by shared object and by symbol is written to DIR (where the
ARI path's extra CPU goes: bench/RESULTS.md).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

from bench.masked_calls import provision, sipp_load
from bench.profile import (
    TICKS, PerfRecord, RssWatch, asterisk_pids, calibration_ms, cpu_seconds, machine_ticks, usage,
)
from bench.stack import percentile
from bridge.config import Settings
from bridge.store import Store
from tests.support.sipp import SippResult
from tests.support.stack import REPO, Stack, running_stack

PLAIN_SOURCE, PLAIN_UNRECORDED_SOURCE = "127.0.0.5", "127.0.0.6"
VIRTUAL, CALLER, COUNTERPART = "+6562000010", "+6592000010", "+6582000010"  # a recorded session
UNRECORDED = ("+6562000011", "+6592000011", "+6582000011")  # a session not recorded
OUTBOUND = "carrier-out"  # the test stack's outbound trunk (MASKING_OUTBOUND_ENDPOINT's default)

LOCAL_PJSIP = f"""
; bench.paths: plain Asterisk, the floor (callers from {PLAIN_SOURCE})
[bench-plain](trunk-defaults)
context = bench-plain
transport = transport-udp
disallow = all
allow = alaw,ulaw

[bench-plain]
type = identify
endpoint = bench-plain
match = {PLAIN_SOURCE}

[bench-plain-unrecorded](trunk-defaults)
context = bench-plain-unrecorded
transport = transport-udp
disallow = all
allow = alaw,ulaw

[bench-plain-unrecorded]
type = identify
endpoint = bench-plain-unrecorded
match = {PLAIN_UNRECORDED_SOURCE}
"""

LOCAL_EXTENSIONS = """
[bench-plain]
exten => _[+0-9].,1,Progress()
 same => n,Playback(beep,noanswer)
 same => n,MixMonitor(bench-${{UNIQUEID}}.wav,b)
 same => n,Dial(PJSIP/{counterpart}@{outbound},30,IgA(beep))
 same => n,Hangup()

[bench-plain-unrecorded]
exten => _[+0-9].,1,Dial(PJSIP/{counterpart}@{outbound},30,I)
 same => n,Hangup()
"""


@dataclass
class Step:
    path: str
    record: bool
    concurrent: int
    calls: int
    answered: int
    recorded: int
    peak: int
    invite_to_200: list[float]
    post_dial: list[float]
    cpu: dict[str, float]
    rss_kib_per_call: float
    machine: dict[str, float]  # every process's CPU per call (SIPp's and the kernel's included), steal
    calibration_ms: float  # the machine's speed just before (bench.profile.calibration_ms)


def wire_times(caller: SippResult) -> list[float]:
    """Per call, ms from the caller's INVITE sent to its 200 OK received."""
    sent: dict[str, datetime] = {}
    times = []
    for message in caller.log():
        if not message.received and message.text.startswith("INVITE ") and message.call_id not in sent:
            sent[message.call_id] = message.at
        elif (message.received and message.text.startswith("SIP/2.0 200") and " INVITE" in _cseq(message.text)
              and message.call_id in sent):
            times.append((message.at - sent.pop(message.call_id)).total_seconds() * 1000)
    return times


def post_dial_delays(caller: SippResult, counterpart: SippResult) -> list[float]:
    """Per call, ms from the caller's INVITE sent to the counterpart's INVITE
    received. Nothing on the wire ties the two legs together (the point of
    masking), so they are paired in order: the n-th call placed with the n-th
    call dialed. Calls go in 100 ms apart and their setups differ by less, so
    order holds; when not every call reached the counterpart, there is no pairing."""
    def firsts(result: SippResult, received: bool) -> list[datetime]:
        seen: dict[str, datetime] = {}
        for m in result.log():
            if m.received == received and m.text.startswith("INVITE ") and m.call_id not in seen:
                seen[m.call_id] = m.at
        return sorted(seen.values())

    placed, dialed = firsts(caller, False), firsts(counterpart, True)
    if len(placed) != len(dialed):
        return []
    return [(d - p).total_seconds() * 1000 for p, d in zip(placed, dialed)]


def own_backends(stack: Stack) -> list[int]:
    """The PostgreSQL backends serving this stack's database (the service's
    pools, or the fallback's): its share of the shared server's CPU."""
    async def query() -> list[int]:
        conn = await asyncpg.connect(stack.dsn)
        try:
            return [r["pid"] for r in await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
        finally:
            await conn.close()
    return asyncio.run(query())


def _cseq(text: str) -> str:
    return next((line for line in text.splitlines() if line.lower().startswith("cseq:")), "")


def far_end(counterpart: SippResult) -> tuple[int, int]:
    """(calls the counterpart answered, most of them up at once), from its own log."""
    up: dict[str, datetime] = {}
    spans = []
    for message in counterpart.log():
        if not message.received and message.text.startswith("SIP/2.0 200") and " INVITE" in _cseq(message.text):
            up.setdefault(message.call_id, message.at)
        elif message.received and message.text.startswith("BYE ") and message.call_id in up:
            spans.append((up[message.call_id], message.at))
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = current = 0
    for _, change in edges:
        current += change
        peak = max(peak, current)
    return len(up), peak


async def recorded_rows(stack: Stack, since: datetime, settle: float = 30) -> tuple[int, int]:
    """(answered calls, of them with a recording with audio) since `since`,
    once every row is finished and every answered call has its recording."""
    store = await Store.connect(stack.dsn, stack.keys)
    try:
        query = ("SELECT count(*) FILTER (WHERE c.disposition = 'answered') AS answered,"
                 " count(*) FILTER (WHERE c.disposition = 'answered' AND r.duration_seconds > 0) AS recorded,"
                 " count(*) FILTER (WHERE c.disposition = 'in_progress'"
                 "   OR (c.disposition = 'answered' AND c.recorded AND r.id IS NULL)) AS pending"
                 " FROM calls c LEFT JOIN recordings r ON r.call_id = c.id WHERE c.started_at >= $1")
        deadline = time.monotonic() + settle
        while True:
            row = await store.pool.fetchrow(query, since)
            if not row["pending"] or time.monotonic() > deadline:
                return row["answered"], row["recorded"]
            await asyncio.sleep(0.5)
    finally:
        await store.close()


def monitor_files(stack: Stack, since: float) -> int:
    """MixMonitor recordings of at least a second of audio (8 kHz, 16 bit) written since `since`."""
    folder = stack.asterisk.dir / "spool" / "monitor"
    deadline = time.monotonic() + 10
    while True:
        files = [f for f in folder.glob("bench-*.wav") if f.stat().st_mtime >= since]
        if time.monotonic() > deadline or not files:
            break
        time.sleep(1)  # MixMonitor closes its file after the hangup
        if all(f.stat().st_size > 16044 for f in files):
            break
    return sum(1 for f in files if f.stat().st_size > 16044)


PATHS = ("plain", "agi", "ari", "ari-snoop")


@contextmanager
def serving(stack: Stack, workdir: Path, path: str):
    """The process that serves `path`'s calls (its pid): the service, with the
    recording tap the path names, or the FastAGI fallback standing alone."""
    if path == "agi":
        stack.stop_service()
        log = workdir / "serve-agi.log"
        # the log is appended to by every step: wait for this process's own line
        started = log.read_text().count('"agi.listening"') if log.exists() else 0
        with open(log, "ab") as out:
            agi = subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve-agi"], cwd=REPO, stdout=out,
                                   stderr=subprocess.STDOUT, env={**os.environ, **stack.env})
        try:
            while log.read_text().count('"agi.listening"') <= started:
                time.sleep(0.1)
            yield agi.pid
        finally:
            agi.terminate()
            agi.wait(timeout=30)
            stack.start_service()
        return
    tap = "snoop" if path == "ari-snoop" else "mixmonitor"
    if path != "plain":
        stack.stop_service()
        stack.start_service(MASKING_RECORDING_TAP=tap)
        stack.wait_ami()
    yield stack.service.pid


def step(stack: Stack, workdir: Path, path: str, record: bool, concurrent: int, rate: float, talk_ms: int,
         warmup: int = 0, perf: Path | None = None) -> Step:
    with serving(stack, workdir, path) as pid:
        if warmup:  # a fresh process's first calls open pools and connections and load code: not a call's cost
            _step(stack, workdir, path, record, pid, max(1, warmup // 2), rate, 1000)
        return _step(stack, workdir, path, record, pid, concurrent, rate, talk_ms, perf)


def _step(stack: Stack, workdir: Path, path: str, record: bool, pid: int, concurrent: int, rate: float,
          talk_ms: int, perf: Path | None = None) -> Step:
    calls = 2 * concurrent
    virtual, caller_number, _ = (VIRTUAL, CALLER, COUNTERPART) if record else UNRECORDED
    source = (PLAIN_SOURCE if record else PLAIN_UNRECORDED_SOURCE) if path == "plain" else None
    uas, uac = sipp_load(stack, workdir, calls, rate, concurrent, talk_ms, virtual, caller_number,
                         f"{path}-{'rec' if record else 'norec'}-{concurrent}", source=source)
    parts = {"asterisk": asterisk_pids(stack.asterisk), "service": [pid]}
    calibration = calibration_ms()
    before, pg_before = usage(parts), {p: cpu_seconds(p) for p in own_backends(stack)}
    machine_before = machine_ticks()
    since, since_wall = datetime.now().astimezone(), time.time()
    label = f"{path}-{'rec' if record else 'norec'}-{concurrent}"
    profile = PerfRecord(parts["asterisk"] if perf else [], (perf or workdir) / f"{label}.data")
    with RssWatch(pid) as rss, profile:
        uac.start()
        caller = uac.wait(calls / rate + talk_ms / 1000 + 120)
        counterpart = uas.wait(60)
        if not record:
            recorded = 0
        elif path == "plain":
            recorded = monitor_files(stack, since_wall)
        else:
            recorded = asyncio.run(recorded_rows(stack, since))[1]
    used = {part: seconds - before[part] for part, seconds in usage(parts).items()}
    machine = {key: (ticks - machine_before[key]) / TICKS for key, ticks in machine_ticks().items()}
    used["postgres"] = sum(cpu_seconds(p) - pg_before.get(p, 0.0) for p in own_backends(stack))
    answered, peak = far_end(counterpart)
    if perf:
        write_profile(profile, perf / f"{label}.txt", used["asterisk"] / max(1, calls) * 1000)
    return Step(path, record, concurrent, calls, answered, recorded, peak, wire_times(caller),
                post_dial_delays(caller, counterpart),
                {part: seconds / max(1, calls) * 1000 for part, seconds in used.items()},
                max(0, rss.peak - rss.idle) / max(1, peak),
                {"busy": machine["busy"] / max(1, calls) * 1000, "steal": machine["steal"] / max(1, calls) * 1000,
                 "share": machine["busy"] / max(1e-9, machine["total"])},
                calibration)


def write_profile(profile: PerfRecord, out: Path, asterisk_ms_per_call: float) -> None:
    """Asterisk's CPU per call split by shared object and by symbol (ms per
    call = share of samples x the step's measured CPU per call)."""
    lines = [f"Asterisk CPU per call: {asterisk_ms_per_call:.1f} ms", "", "by shared object:"]
    lines += [f"  {share * asterisk_ms_per_call:6.2f} ms  {share:6.1%}  {name}" for share, name in profile.report("dso")]
    lines += ["", "by symbol:"]
    lines += [f"  {share * asterisk_ms_per_call:6.2f} ms  {share:6.1%}  {name}"
              for share, name in profile.report("dso,sym", top=60)]
    out.write_text("\n".join(lines) + "\n")
    print(f"  Asterisk profile: {out}", flush=True)


def table(steps: list[Step]) -> str:
    lines = ["| concurrent | path | recorded | answered (far end) | recordings with audio | peak up"
             " | INVITE->200 p50 / p95 / p99 ms | post-dial delay p50 / p95 / p99 ms"
             " | CPU ms per call: Asterisk / service / PostgreSQL | service RSS KiB per call"
             " | machine: CPU ms per call, steal, busy | calibration ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in steps:
        lines.append(f"| {s.concurrent} | {s.path} | {'yes' if s.record else 'no'} | {s.answered}/{s.calls} | "
                     f"{s.recorded if s.record else '-'} | {s.peak} | {_spread(s.invite_to_200)} | "
                     f"{_spread(s.post_dial)} | "
                     f"{s.cpu['asterisk']:.1f} / {s.cpu['service']:.1f} / {s.cpu['postgres']:.1f} | "
                     f"{s.rss_kib_per_call:.1f} | "
                     f"{s.machine['busy']:.0f}, {s.machine['steal']:.1f}, {s.machine['share']:.0%} | "
                     f"{s.calibration_ms:.0f} |")
    return "\n".join(lines)


def _spread(times: list[float]) -> str:
    if not times:
        return "none"
    return f"{statistics.median(times):.0f} / {percentile(times, 95):.0f} / {percentile(times, 99):.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--concurrent", nargs="+", type=int, default=[50, 100, 150, 200])
    parser.add_argument("--recorded", nargs="+", choices=("yes", "no"), default=["yes", "no"],
                        help="sessions recorded, not, or both (ari-snoop only recorded: unrecorded it is ari)")
    parser.add_argument("--rate", type=float, default=10)
    parser.add_argument("--talk-ms", type=int, help="default: long enough for the step's concurrency at the rate")
    parser.add_argument("--warmup", type=int, default=10,
                        help="calls placed on each path's freshly started process before the step is measured")
    parser.add_argument("--perf", type=Path, metavar="DIR",
                        help="record Asterisk with `perf` during each step; its CPU by shared object and symbol in DIR")
    args = parser.parse_args()
    if args.perf:
        args.perf.mkdir(parents=True, exist_ok=True)

    workdir = Path(tempfile.mkdtemp(prefix="masking-bench-paths-"))
    local = workdir / "asterisk-local"
    local.mkdir()
    steps: list[Step] = []
    # The test stack's ports and secrets, with `make run`'s log level and timeouts.
    env = {"MASKING_LOG_LEVEL": "info", "MASKING_DIAL_TIMEOUT": "30", "MASKING_LOCAL_CONFIG_DIR": str(local),
           "MASKING_DB_TIMEOUT": str(Settings().db_timeout), "MASKING_TEST_HOOKS": "false"}
    with _stack(workdir, local, max(args.concurrent), env) as stack:
        asyncio.run(provision(stack, [(VIRTUAL, CALLER, COUNTERPART)], record=True))
        asyncio.run(provision(stack, [UNRECORDED], record=False))
        print(f"Asterisk: {stack.asterisk.cli('core show version').strip()}; cores: {os.cpu_count()}; "
              f"load average before: {os.getloadavg()}")
        for concurrent in args.concurrent:
            talk_ms = args.talk_ms or int((concurrent / args.rate + 3) * 1000)
            for record in (answer == "yes" for answer in args.recorded):
                for path in args.paths:
                    if path == "ari-snoop" and not record:
                        continue
                    result = step(stack, workdir, path, record, concurrent, args.rate, talk_ms, args.warmup, args.perf)
                    steps.append(result)
                    print(table([result]).splitlines()[-1], flush=True)
                    channels, bridges = stack.leftovers(15)
                    if channels or bridges:
                        print(f"  left in Asterisk after {path} {concurrent}: {len(channels)} channels, "
                              f"{len(bridges)} bridges")
                    time.sleep(3)
    print(table(steps))
    print(f"work files: {workdir}")
    return 0


def _stack(workdir: Path, local: Path, most: int, env: dict[str, str]):
    """The test stack, with the plain path's dialplan as the operator's local additions."""
    (local / "pjsip.conf").write_text(LOCAL_PJSIP)
    (local / "extensions.conf").write_text(LOCAL_EXTENSIONS.format(counterpart=COUNTERPART, outbound=OUTBOUND))
    return running_stack(workdir, rtp_ports=max(200, 6 * most), **env)


if __name__ == "__main__":
    sys.exit(main())
