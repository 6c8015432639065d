"""Benchmark: the service's memory per active call, at plateaus of calls up.

A plateau is N recorded calls all bridged and talking, none setting up or
ending: the moment a call's steady state is all the service holds for it.
After a warm-up plateau (pools, buffers and caches grown on first use), the
service's RSS is read at each plateau in turn, and with --tracemalloc (the
service started with PYTHONTRACEMALLOC, SIGUSR2 for a snapshot:
bridge/memory.py) so are its live Python allocations, by the line that made
them. Per active call = the difference between two plateaus / the calls added.
RSS and the traced allocations are read in separate runs: tracing costs
memory of its own.

    .venv/bin/python -m bench.memory --plateaus 50 100 200
    .venv/bin/python -m bench.memory --plateaus 50 200 --tracemalloc

It also reads the service's CPU with no call up and while each plateau's
calls only talk: what a call costs for its length, apart from its setup
and ending.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench.masked_calls import provision, sipp_load
from bench.profile import RssWatch, cpu_seconds
from bench.stack import bench_stack
from tests.support.stack import Stack

VIRTUAL, CALLER, COUNTERPART = "+6562000003", "+6592000003", "+6582000003"


def bridged(stack: Stack) -> int:
    return len(stack.ari("GET", "/bridges"))


def wait_until(condition, timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False


def snapshot(stack: Stack) -> tracemalloc.Snapshot:
    """Have the service write a snapshot, and read it."""
    folder = stack.settings.state_dir
    before = set(folder.glob("memory-*.tracemalloc"))
    os.kill(stack.service.pid, signal.SIGUSR2)
    if not wait_until(lambda: set(folder.glob("memory-*.tracemalloc")) - before
                      and "memory.snapshot" in stack.service_log.read_text()[-4000:], 60):
        raise RuntimeError("the service wrote no snapshot (started without PYTHONTRACEMALLOC?)")
    time.sleep(1)
    return tracemalloc.Snapshot.load(str(max(set(folder.glob("memory-*.tracemalloc")) - before)))


def plateau(stack: Stack, workdir: Path, calls: int, rate: float, hold: float, traced: bool, name: str):
    """Place `calls` calls, wait until all are bridged, read RSS (and a snapshot,
    or else the service's CPU) while they talk, then let them end. Returns (RSS
    KiB, snapshot or None, CPU seconds per second or None)."""
    talk_ms = int((calls / rate + hold) * 1000)
    uas, uac = sipp_load(stack, workdir, calls, rate, calls, talk_ms, VIRTUAL, CALLER, name=name)
    uac.start()
    try:
        if not wait_until(lambda: bridged(stack) >= calls, calls / rate + 30):
            raise RuntimeError(f"only {bridged(stack)} of {calls} calls bridged")
        time.sleep(2)  # the last calls' recordings started, their setup's garbage collected
        rss = RssWatch(stack.service.pid).read()
        taken = snapshot(stack) if traced else None
        talking_cpu = None
        if not traced:  # tracing costs CPU of its own, and its snapshot takes the hold's time
            window = max(1.0, hold - 6)  # the plateau's CPU: what calls cost while they only talk
            cpu_before, started = cpu_seconds(stack.service.pid), time.monotonic()
            time.sleep(window)
            talking_cpu = (cpu_seconds(stack.service.pid) - cpu_before) / (time.monotonic() - started)
        if bridged(stack) < calls:
            raise RuntimeError("calls ended before the plateau was read: raise --hold")
    finally:
        uac.wait(talk_ms / 1000 + calls / rate + 120)
        uas.wait(60)
    wait_until(lambda: not stack.leftovers(1)[0], 60)
    time.sleep(3)  # the recordings stored
    return rss, taken, talking_cpu


def idle_cpu(stack: Stack, seconds: float) -> float:
    """The service's CPU seconds per second with no call up (its lease, outbox, sweeps)."""
    before, started = cpu_seconds(stack.service.pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(stack.service.pid) - before) / (time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plateaus", type=int, nargs="+", default=[50, 200], metavar="N")
    parser.add_argument("--warmup", type=int, help="calls up in the warm-up plateau (default: the first plateau's)")
    parser.add_argument("--rate", type=float, default=10)
    parser.add_argument("--hold", type=float, default=15, help="seconds all calls of a plateau talk together")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also compare the service's live Python allocations between plateaus")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="masking-bench-memory-"))
    with bench_stack(workdir, max(args.plateaus)) as stack:
        asyncio.run(provision(stack, [(VIRTUAL, CALLER, COUNTERPART)]))
        if args.tracemalloc:
            stack.stop_service()
            stack.start_service(PYTHONTRACEMALLOC="1")
        stack.wait_ami()
        warm = args.warmup or args.plateaus[0]
        plateau(stack, workdir, warm, args.rate, args.hold, False, "warmup")
        print(f"warm-up: {warm} calls up, service RSS {RssWatch(stack.service.pid).read() / 1024:.1f} MiB after")
        idle = idle_cpu(stack, 10)
        print(f"no call up: service CPU {idle * 1000:.2f} ms per second")
        readings = []
        for n in args.plateaus:
            rss, taken, talking = plateau(stack, workdir, n, args.rate, args.hold, args.tracemalloc,
                                          f"plateau-{n}")
            traced = sum(s.size for s in taken.statistics("filename")) if taken else None
            readings.append((n, rss, taken))
            print(f"plateau {n} calls up: service RSS {rss / 1024:.1f} MiB"
                  + (f", traced Python allocations {traced / 1024:.0f} KiB" if taken else "")
                  + (f"; service CPU while they talk {talking * 1000:.2f} ms per second"
                     f" ({(talking - idle) * 1e6 / n:.1f} us per call per second over idle)" if talking is not None
                     else ""))
        for (n1, rss1, snap1), (n2, rss2, snap2) in zip(readings, readings[1:]):
            added = n2 - n1
            print(f"{n1} -> {n2} calls up: RSS {(rss2 - rss1) / added:+.1f} KiB per call added")
            if snap1 and snap2:
                diff = snap2.compare_to(snap1, "lineno")
                total = sum(d.size_diff for d in diff)
                print(f"  traced Python allocations: {total / 1024 / added:+.1f} KiB per call added; by line:")
                for d in diff[:args.top]:
                    frame = d.traceback[0]
                    print(f"    {d.size_diff / added:+8.0f} B/call {d.count_diff / added:+6.1f} blocks/call"
                          f"  {frame.filename.split('site-packages/')[-1].split('/work/main/')[-1]}:{frame.lineno}")
    print(f"work files: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
