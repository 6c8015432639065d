"""Where the service's memory goes, when an operator asks.

Started with `PYTHONTRACEMALLOC=1` (Python traces its own allocations, at a
cost in CPU: for diagnosis, not for everyday running), the service writes a
`tracemalloc` snapshot of its live allocations on SIGUSR2, into its state
folder as `memory-<pid>-<n>.tracemalloc`. Two snapshots, taken with different
numbers of calls up, say what each call holds (`bench.memory --tracemalloc`
compares them). A snapshot holds file names, line numbers and sizes: no data.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import signal
import tracemalloc
from pathlib import Path

from bridge.logs import get_logger

log = get_logger("bridge.memory")


def snapshot_on_signal(loop: asyncio.AbstractEventLoop, folder: Path) -> bool:
    """Write a snapshot on each SIGUSR2 while tracemalloc traces; False if it does not."""
    if not tracemalloc.is_tracing():
        return False
    counter = itertools.count(1)

    def write() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"memory-{os.getpid()}-{next(counter)}.tracemalloc"
        tracemalloc.take_snapshot().dump(str(path))
        traced, peak = tracemalloc.get_traced_memory()
        log.info("memory.snapshot", path=str(path), traced_kib=traced // 1024, peak_kib=peak // 1024)

    loop.add_signal_handler(signal.SIGUSR2, write)
    return True
