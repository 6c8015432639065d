"""Where the service's CPU goes under load: CPU seconds per process from
/proc, and a sampling profile of the running service by py-spy (issue 16:
profile, do not guess).

py-spy attaches to the service from outside (ptrace), so the service runs as
it does in production, with no profiler in its code. It is a benchmark tool,
not a dependency: `pip install py-spy` into the venv, or name it with
`MASKING_PY_SPY`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

TICKS = os.sysconf("SC_CLK_TCK")
FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def _cpu_ticks(pid: int) -> list[int]:
    """utime, stime, cutime, cstime of a process from /proc (zeros once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return [0, 0, 0, 0]
    return [int(f) for f in fields[11:15]]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children that were waited for."""
    return sum(_cpu_ticks(pid)) / TICKS


def system_seconds(pid: int) -> float:
    """The part of `cpu_seconds` spent in the kernel (system calls: on
    loopback a socket write also runs the receiving side's TCP path)."""
    _, stime, _, cstime = _cpu_ticks(pid)
    return (stime + cstime) / TICKS


def pids_of(pattern: str) -> list[int]:
    """Processes whose command line holds `pattern` (pgrep -f)."""
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in found.split()]


def asterisk_pids(asterisk) -> list[int]:
    """The processes of one Asterisk instance (`bridge.stack.asterisk.AsteriskInstance`)."""
    return pids_of(f"{asterisk.inner_dir}/etc/asterisk.conf")


def machine_ticks() -> dict[str, int]:
    """All CPUs' time so far from /proc/stat: busy (user, nice, system, irq,
    softirq), steal (the hypervisor ran someone else) and total."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return {"busy": user + nice + system + irq + softirq, "steal": steal, "total": sum(fields)}


def calibration_ms(rounds: int = 5) -> float:
    """How fast this machine is right now: the least CPU time of rounds of a
    fixed single-threaded Python workload (dicts, JSON, sha256). This VM's
    speed moves by half between hours (bench/RESULTS.md), and a figure in
    milliseconds means little without it."""
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time()
        table = {str(i): i * 2 for i in range(200_000)}
        text = json.dumps(table)
        json.loads(text)
        hashlib.sha256(text.encode()).hexdigest()
        best = min(best, time.thread_time() - started)
    return best * 1000


def usage(pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each part, a part being a list of processes."""
    return {part: sum(cpu_seconds(p) for p in ids) for part, ids in pids.items()}


class RssWatch:
    """A process's resident size (KiB) while a load runs: its peak, and a
    sample every `every` seconds (seconds since start, KiB)."""

    def __init__(self, pid: int, every: float = 0.2):
        self.pid, self.peak, self.every, self._stop = pid, 0, every, threading.Event()
        self.idle = self.read()
        self.samples: list[tuple[float, int]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def read(self) -> int:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self.every):
            rss = self.read()
            self.peak = max(self.peak, rss)
            self.samples.append((time.monotonic() - started, rss))

    def __enter__(self) -> "RssWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def rss_trend(samples: list[tuple[float, int]], rate: float, calls: int, points: int = 8) -> tuple[float, list[str]]:
    """Whether memory stays flat over a long load: KiB the process grew per
    1,000 calls placed between a quarter of the way and the last call placed
    (warm-up, pools and caches, before), and a few samples to print."""
    if not samples:
        return 0.0, []
    placing = calls / rate
    during = [(t, kib) for t, kib in samples if t <= placing] or samples
    start = next(((t, kib) for t, kib in during if t >= placing / 4), during[0])
    end = during[-1]
    placed = (end[0] - start[0]) * rate
    growth = (end[1] - start[1]) / placed * 1000 if placed > 0 else 0.0
    step = max(1, len(samples) // points)
    rows = [f"{t:6.0f} s  {min(calls, int(t * rate)):6d} calls placed  {kib / 1024:7.1f} MiB"
            for t, kib in samples[::step] + samples[-1:]]
    return growth, rows


@dataclass(frozen=True)
class Hotspot:
    """A function's share of the samples: where it was running (self) and
    where it was on the stack (inclusive)."""
    function: str
    self_share: float
    inclusive_share: float


def _frame(frame: str) -> str:
    """`name (path/to/module.py:123)` -> `name (module.py)`: lines of a function count as one."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{match['function']} ({Path(match['file']).name})"


def library(frame: str) -> str:
    """Whose code a frame runs: a package (`asyncpg`), a domain of ours
    (`bridge.calls`) or a standard-library module (`asyncio`, `json`)."""
    match = FRAME.match(frame.strip())
    parts = Path(match["file"]).parts if match else ()
    if not parts:
        return "?"
    if "site-packages" in parts[:-1]:
        return parts[parts.index("site-packages") + 1].removesuffix(".py")
    if "bridge" in parts[:-1]:
        i = parts.index("bridge")
        return ".".join(p.removesuffix(".py") for p in parts[i:i + 2])
    versions = [i for i, p in enumerate(parts[:-1]) if re.fullmatch(r"python3\.\d+", p)]
    if versions:
        return parts[versions[-1] + 1].removesuffix(".py")
    # py-spy shortens paths to their import name: `aiohttp/client.py`, `asyncio/events.py`
    return parts[0].removesuffix(".py") if not Path(match["file"]).is_absolute() else parts[-1].removesuffix(".py")


def _idle(frame: str) -> bool:
    """The event loop waiting for I/O (`EpollSelector.select`, py-spy 0.4 names methods by class)."""
    name = _frame(frame).split(" (", 1)[0]
    return name.rsplit(".", 1)[-1] in ("select", "poll", "epoll_wait")


def _samples(raw: str, skip_idle: bool):
    """(frames, count) of each stack in py-spy's raw (collapsed) output. With
    `skip_idle`, the event loop waiting in select/epoll is left out: idle
    time, not cost."""
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        if not frames or (skip_idle and _idle(frames[-1])):
            continue
        yield frames, int(count)


def hotspots(raw: str, top: int = 15, skip_idle: bool = True) -> tuple[int, list[Hotspot], list[Hotspot]]:
    """(busy samples, the `top` functions, every library) by self share."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    own_lib: Counter[str] = Counter()
    anywhere_lib: Counter[str] = Counter()
    total = 0
    for frames, n in _samples(raw, skip_idle):
        total += n
        own[_frame(frames[-1])] += n
        own_lib[library(frames[-1])] += n
        for function in {_frame(f) for f in frames}:
            anywhere[function] += n
        for lib in {library(f) for f in frames}:
            anywhere_lib[lib] += n
    if not total:
        return 0, [], []
    functions = [Hotspot(f, own[f] / total, anywhere[f] / total) for f, _ in own.most_common(top)]
    libraries = sorted((Hotspot(f, own_lib[f] / total, n / total) for f, n in anywhere_lib.items()),
                       key=lambda h: (-h.self_share, -h.inclusive_share))
    return total, functions, libraries


class Profiler:
    """`py-spy record` on one process for the duration of a `with` block."""

    def __init__(self, pid: int, output: Path, rate: int = 100):
        self.pid, self.output, self.rate = pid, output, rate
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "Profiler":
        beside = Path(sys.executable).parent / "py-spy"  # the venv's, when the venv is not on PATH
        py_spy = os.environ.get("MASKING_PY_SPY") or shutil.which("py-spy") or (str(beside) if beside.exists() else None)
        if not py_spy:
            raise FileNotFoundError("py-spy not found: `.venv/bin/pip install py-spy`, or set MASKING_PY_SPY")
        self.process = subprocess.Popen(
            [py_spy, "record", "--pid", str(self.pid), "--rate", str(self.rate), "--format", "raw",
             "--nonblocking", "--output", str(self.output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def __exit__(self, *exc) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def report(raw_file: Path, top: int = 15) -> str:
    """The hotspots as lines for the benchmark's output."""
    samples, functions, libraries = hotspots(raw_file.read_text() if raw_file.exists() else "", top)
    lines = [f"  profile: {samples} busy samples of the service (py-spy, idle event-loop waits left out); "
             f"raw stacks in {raw_file}", "  by whose code runs (self, and on the stack):"]
    lines += [f"    {h.self_share:6.1%} self {h.inclusive_share:6.1%} incl  {h.function}" for h in libraries
              if h.self_share >= 0.005 or h.inclusive_share >= 0.02]
    lines.append(f"  top {top} functions:")
    lines += [f"    {h.self_share:6.1%} self {h.inclusive_share:6.1%} incl  {h.function}" for h in functions]
    return "\n".join(lines)


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """The service's /metrics as {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def ari_traffic(before: dict, after: dict, calls: int) -> list[str]:
    """What each call cost in ARI traffic between two scrapes: REST requests
    (by operation, most first) and events (by type), per call."""
    def grown(name: str, key: str) -> Counter:
        out: Counter = Counter()
        for (sample, labels), value in after.items():
            if sample == name:
                out[dict(labels)[key]] += value - before.get((sample, labels), 0.0)
        return +out

    requests, events = grown("masking_ari_requests_total", "operation"), grown("masking_ari_events_total", "type")
    calls = max(1, calls)
    per = lambda counter: ", ".join(f"{k} {v / calls:.1f}" for k, v in counter.most_common())  # noqa: E731
    return [f"ARI requests per call: {sum(requests.values()) / calls:.1f} ({per(requests)})",
            f"ARI events per call: {sum(events.values()) / calls:.1f} ({per(events)})"]


class PerfRecord:
    """`perf record` of native processes (Asterisk) while a load runs: where
    their CPU goes by shared object (the kernel, libjansson, res_stasis,
    chan_pjsip) and by symbol, sampled on the CPU clock (a VM has no hardware
    counters). A benchmark tool like py-spy: Debian's `linux-perf`, or
    `MASKING_PERF`; without it, nothing is recorded.

    Recorded system-wide and read for the processes' threads by their names:
    attached to Asterisk (`perf record -p`), perf stalls its threads while it
    attaches to each (p95 INVITE->200 went from 1.2 to 6 s) and sometimes
    quits when one ends meanwhile."""

    def __init__(self, pids: list[int], out: Path, frequency: int = 499):
        self.pids, self.out, self.frequency = pids, out, frequency
        self.perf = os.environ.get("MASKING_PERF") or shutil.which("perf")
        self.comms: set[str] = set()
        self._process: subprocess.Popen | None = None

    def _read_comms(self) -> None:
        for pid in self.pids:
            for comm in Path(f"/proc/{pid}/task").glob("*/comm"):
                try:
                    self.comms.add(comm.read_text().strip())
                except OSError:
                    pass  # the thread ended

    def __enter__(self) -> "PerfRecord":
        if self.perf and self.pids:
            self._read_comms()
            self._process = subprocess.Popen(
                [self.perf, "record", "-q", "-a", "-e", "cpu-clock", "-F", str(self.frequency), "-o", str(self.out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc) -> None:
        if self._process is None:
            return
        if self._process.poll() is not None:  # refused (perf_event_paranoid) or failed: say so, report nothing
            print(f"perf record exited with {self._process.returncode}: no profile", file=sys.stderr)
            self._process = None
            return
        self._read_comms()
        self._process.send_signal(signal.SIGINT)
        self._process.wait(timeout=300)

    def report(self, sort: str = "dso", top: int = 25) -> list[tuple[float, str]]:
        """(share of these processes' samples, name) for the `top` entries by `sort` (`dso`, `dso,sym`)."""
        if self._process is None or not self.out.exists():
            return []
        text = subprocess.run([self.perf, "report", "-i", str(self.out), "--sort", f"comm,{sort}", "--stdio"],
                              capture_output=True, text=True).stdout
        shares: Counter[str] = Counter()
        for line in text.splitlines():
            match = re.match(r"\s*([\d.]+)%\s+(\S+)\s+(.*\S)", line)
            if match and not line.lstrip().startswith("#") and match[2] in self.comms:
                shares[" ".join(match[3].split())] += float(match[1])  # summed over the threads' names
        total = sum(shares.values()) or 1.0
        return [(share / total, name) for name, share in shares.most_common(top)]
