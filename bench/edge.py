"""Benchmark: masked, recorded calls per second through the Kamailio edge, with
1 and then 2 Asterisk nodes (a bridge each), and the CPU each process used.

Starts its own edge, nodes, bridges and database (free ports, a loopback
network of its own, as tests/support/edge.py does), places --calls calls at
--rate calls/s with --talk-ms of real audio each, and counts success at the
far end: answered rows and recordings in the database, not SIPp's counter.
Run it on a quiet machine; it is not a test.

    .venv/bin/python -m bench.edge --nodes 1 2 --calls 60 --rate 6 --talk-ms 4000
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from bench.masked_calls import far_end_counts, provision
from bench.profile import asterisk_pids, pids_of, usage
from tests.support.edge import EdgeStack, running_edge_stack
from tests.support.sipp import Sipp, render

def processes(stack: EdgeStack) -> dict[str, list[int]]:
    """The pids that make up each part: the edge's processes, each node's Asterisk and bridge."""
    found = {"edge (kamailio)": pids_of(f"{stack.edge.dir}/kamailio.cfg")}
    for name, node in stack.nodes.items():
        found[f"{name} asterisk"] = asterisk_pids(node.asterisk)
        found[f"{name} bridge"] = [node.service.pid]
    return found


def run(nodes: int, calls: int, rate: float, talk_ms: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix=f"masking-bench-edge{nodes}-"))
    concurrent = int(rate * talk_ms / 1000 * 2) + 10
    with running_edge_stack(workdir, count=nodes, rtp_ports=max(100, 6 * concurrent), MASKING_LOG_LEVEL="info",
                            MASKING_DIAL_TIMEOUT="30", MASKING_EDGE_CHILDREN="4") as stack:
        virtual, a, b = "+6563000001", "+6593000001", "+6583000001"
        asyncio.run(provision(stack, [(virtual, a, b)]))
        uas = Sipp(workdir, render("uas_answer_routed.xml", workdir), ["-rtp_echo"], "uas",
                   port=stack.counterpart_port)
        uas.command[uas.command.index("-m") + 1] = str(calls)
        uas.start()
        time.sleep(0.3)
        uac = Sipp(workdir, render("uac_call_routed.xml", workdir),
                   ["-s", virtual, "-key", "caller", a, "-d", str(talk_ms), "-r", str(rate), "-l", str(concurrent),
                    stack.sip_target], "uac")
        uac.command[uac.command.index("-m") + 1] = str(calls)
        pids = processes(stack)
        before = usage(pids)
        since = datetime.now().astimezone()
        started = time.monotonic()
        uac.start()
        result = uac.wait(calls / rate + talk_ms / 1000 + 120)
        elapsed = time.monotonic() - started
        after = usage(pids)
        uas.wait(30)
        counts = asyncio.run(far_end_counts(stack, since))
        rows, peak, answer_rate = asyncio.run(_per_node(stack, since))
    print(f"{nodes} node(s): {calls} calls offered at {rate}/s, {talk_ms} ms talk each, recorded; "
          f"SIPp caller exit {result.returncode}, {elapsed:.1f} s")
    print(f"  far end: {counts['answered']}/{counts['calls']} answered, {counts['recordings_with_audio']} recordings "
          f"with audio; setup p50 {counts['setup_p50']} ms p95 {counts['setup_p95']} ms; "
          f"answered per second while offered {answer_rate:.2f}; per node {dict(rows)}; "
          f"peak concurrent answered (and recorded) calls {peak}")
    for part in pids:
        print(f"  cpu {part}: {after[part] - before[part]:.1f} s ({(after[part] - before[part]) / elapsed * 100:.0f}%)")
    print(f"  work files: {workdir}")


async def _per_node(stack: EdgeStack, since: datetime) -> tuple[Counter, int, float]:
    """Answered calls per node, the most that were up at one moment (from the
    rows' answered and ended times), and answers per second from the first
    answer to the last."""
    import asyncpg

    conn = await asyncpg.connect(stack.dsn)
    try:
        rows = await conn.fetch("SELECT asterisk_node, answered_at, ended_at FROM calls"
                                " WHERE started_at >= $1 AND disposition = 'answered'", since)
    finally:
        await conn.close()
    edges = sorted([(r["answered_at"], 1) for r in rows if r["answered_at"]]
                   + [(r["ended_at"], -1) for r in rows if r["answered_at"] and r["ended_at"]],
                   key=lambda e: (e[0], e[1]))
    up = peak = 0
    for _, step in edges:
        up += step
        peak = max(peak, up)
    answers = sorted(r["answered_at"] for r in rows if r["answered_at"])
    span = (answers[-1] - answers[0]).total_seconds() if len(answers) > 1 else 0
    return Counter(stack.node_of(dict(r)) for r in rows), peak, (len(answers) - 1) / span if span else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--rate", type=float, default=6)
    parser.add_argument("--talk-ms", type=int, default=4000)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}; load average before: {os.getloadavg()}")
    for nodes in args.nodes:
        run(nodes, args.calls, args.rate, args.talk_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
