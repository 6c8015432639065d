"""Benchmark: post-dial delay and concurrent masked calls on the real stack.

Starts its own Asterisk, database and service (free ports, as the tests do),
then:
  1. places --sequential calls one at a time and measures the post-dial delay
     on the wire: the caller's INVITE sent -> the counterpart's INVITE received,
     both from SIPp's own message timestamps (on recorded sessions, the default,
     this includes the recording notice the caller hears before the dial;
     --no-record measures the dial path alone);
  2. places --calls calls at --rate calls/s, at most --concurrent at once, each
     talking --talk-ms with real audio, and counts success at the far end:
     rows answered in the database and verified recordings on disk, not SIPp's
     caller-side counter; with the CPU seconds per call that the service and
     Asterisk spent on the load (/proc), and with --profile a py-spy sampling
     profile of the service during the load (bench/profile.py).

With --webhook the sessions name a webhook receiver (on loopback, in this
process) and each call's events (ringing, answered, completed) are sent to it:
the cost of a call as a business with webhooks has it.

    .venv/bin/python -m bench.masked_calls --sequential 20 --calls 100 --rate 10 --concurrent 40
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from datetime import datetime
from pathlib import Path

from bench.profile import (Profiler, RssWatch, ari_traffic, asterisk_pids, calibration_ms, report, rss_trend, scrape,
                           system_seconds, usage)
from bench.stack import bench_stack, invite_times, summary
from bridge.sessions.models import SessionRequest
from bridge.store import Store
from tests.support.sipp import Sipp, render
from tests.support.stack import Stack

# PostgreSQL 15 flushes a backend's table statistics within 10 s of it going idle.
STATS_FLUSH_SECONDS = 11


class WebhookReceiver:
    """A business's webhook endpoint on loopback: every event it got, as
    (event id, type, call id), in order; an event sent again shows twice."""

    def __init__(self) -> None:
        got = self.got = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a business's web server answers

            def do_POST(self) -> None:
                event = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                got.append((event.get("id"), event.get("type", "?"), (event.get("data") or {}).get("call_id")))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def received(self) -> collections.Counter:
        """The events got, by type."""
        return collections.Counter(kind for _, kind, _ in self.got)

    def close(self) -> None:
        self.server.shutdown()


async def provision(stack: Stack, parties: list[tuple[str, str, str]], record: bool = True,
                    webhook_url: str | None = None) -> None:
    store = await Store.connect(stack.dsn, stack.keys)
    try:
        for virtual, a, b in parties:
            await store.numbers.add(virtual)
            await store.sessions.create(SessionRequest(a, b, ttl_seconds=3600, record=record, purpose="delivery_order",
                                                       webhook_url=webhook_url))
    finally:
        await store.close()


async def far_end_counts(stack: Stack, since: datetime, settle: float = 20) -> dict:
    """Counts once every call row is finished and every recorded call has its
    recording row (or `settle` seconds have passed)."""
    store = await Store.connect(stack.dsn, stack.keys)
    try:
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            pending = await store.pool.fetchval(
                "SELECT count(*) FROM calls c LEFT JOIN recordings r ON r.call_id = c.id"
                " WHERE c.started_at >= $1 AND (c.disposition = 'in_progress' OR (c.recorded AND r.id IS NULL))",
                since)
            if not pending:
                break
            await asyncio.sleep(0.5)
        missing = await store.pool.fetch(
            "SELECT c.id, c.disposition, c.recorded, c.talk_seconds FROM calls c"
            " LEFT JOIN recordings r ON r.call_id = c.id"
            " WHERE c.started_at >= $1 AND c.disposition = 'answered' AND r.id IS NULL", since)
        for call in missing:
            print(f"  answered without recording: {dict(call)}")
        row = await store.pool.fetchrow(
            "SELECT count(*) FILTER (WHERE c.disposition = 'answered') AS answered,"
            " count(*) AS calls, count(r.id) AS recordings,"
            " count(*) FILTER (WHERE r.duration_seconds > 0) AS recordings_with_audio,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY c.setup_ms) AS setup_p50,"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY c.setup_ms) AS setup_p95,"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM c.answered_at - c.ringing_at))"
            "   AS ring_to_bridge_p95"
            " FROM calls c LEFT JOIN recordings r ON r.call_id = c.id WHERE c.started_at >= $1", since)
        return dict(row)
    finally:
        await store.close()


async def row_writes(stack: Stack) -> tuple[int, int, int]:
    """(rows inserted, rows updated) in `calls` so far, and transactions
    committed in the database (each statement outside a transaction is one),
    from PostgreSQL's own statistics: what the service wrote."""
    store = await Store.connect(stack.dsn, stack.keys)
    try:
        row = await store.pool.fetchrow(
            "SELECT n_tup_ins, n_tup_upd, (SELECT xact_commit FROM pg_stat_database"
            " WHERE datname = current_database()) AS commits FROM pg_stat_user_tables WHERE relname = 'calls'")
        return row["n_tup_ins"], row["n_tup_upd"], row["commits"]
    finally:
        await store.close()


def sequential_pdd(stack: Stack, workdir: Path, count: int) -> list[float]:
    virtual, a = "+6562000001", "+6592000001"
    delays = []
    for i in range(count):
        uas = Sipp(workdir, render("uas_answer.xml", workdir), ["-rtp_echo", "-d", "500"], f"pdd-uas-{i}",
                   port=stack.counterpart_port).start()
        time.sleep(0.2)
        uac = Sipp(workdir, render("uac_call.xml", workdir),
                   ["-s", virtual, "-key", "caller", a, "-d", "500", stack.sip_target], f"pdd-uac-{i}").start()
        caller, counterpart = uac.wait(30), uas.wait(30)
        sent, received = invite_times(caller.messages, "sent"), invite_times(counterpart.messages, "received")
        if sent and received:
            delays.append((received[0] - sent[0]).total_seconds() * 1000)
    return delays


def sipp_load(stack: Stack, workdir: Path, calls: int, rate: float, concurrent: int, talk_ms: int,
              virtual: str, caller: str, name: str = "load", source: str | None = None) -> tuple[Sipp, Sipp]:
    """The counterparts, started (answering `calls` calls, echoing audio), and
    the callers, ready to start: `calls` at `rate`, at most `concurrent` at
    once, each talking `talk_ms` with real audio, from `source` if given."""
    uas = Sipp(workdir, render("uas_answer.xml", workdir), ["-rtp_echo", "-d", str(talk_ms)], f"{name}-uas",
               port=stack.counterpart_port)
    uas.command[uas.command.index("-m") + 1] = str(calls)
    uas.start()
    time.sleep(0.3)
    uac = Sipp(workdir, render("uac_call.xml", workdir),
               ["-s", virtual, "-key", "caller", caller, "-d", str(talk_ms), "-r", str(rate), "-l", str(concurrent),
                stack.sip_target], f"{name}-uac")
    uac.command[uac.command.index("-m") + 1] = str(calls)
    if source:
        uac.command[uac.command.index("-i") + 1] = source
    return uas, uac


def load(stack: Stack, workdir: Path, calls: int, rate: float, concurrent: int, talk_ms: int) -> tuple[int, float]:
    uas, uac = sipp_load(stack, workdir, calls, rate, concurrent, talk_ms, "+6562000002", "+6592000002")
    started = time.monotonic()
    uac.start()
    result = uac.wait(calls / rate + talk_ms / 1000 + 120)
    elapsed = time.monotonic() - started
    uas.wait(30)
    return result.returncode, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequential", type=int, default=20)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10)
    parser.add_argument("--concurrent", type=int, default=40)
    parser.add_argument("--talk-ms", type=int, default=5000)
    parser.add_argument("--record", action=argparse.BooleanOptionalAction, default=True,
                        help="record the sessions (the caller then hears the recording notice before the dial)")
    parser.add_argument("--rss-every", type=float, metavar="SECONDS",
                        help="sample the service's RSS this often during the load and report its trend")
    parser.add_argument("--warmup-concurrent", type=int, metavar="N",
                        help="first a warm-up load at N at once (pools, buffers, caches grown), then the service's"
                             " RSS per additional active call: (peak - warm-up peak) / (concurrent - N)")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="profile the service with py-spy during the load; raw stacks to FILE")
    parser.add_argument("--webhook", action="store_true",
                        help="the sessions send their call events to a receiver on loopback")
    args = parser.parse_args()
    receiver = WebhookReceiver() if args.webhook else None

    workdir = Path(tempfile.mkdtemp(prefix="masking-bench-"))
    with bench_stack(workdir, args.concurrent) as stack:
        asyncio.run(provision(stack, [("+6562000001", "+6592000001", "+6582000001"),
                                      ("+6562000002", "+6592000002", "+6582000002")], args.record,
                              receiver.url if receiver else None))
        print(f"Asterisk: {stack.asterisk.cli('core show version').strip()}; cores: {os.cpu_count()}")
        if args.sequential:
            delays = sequential_pdd(stack, workdir, args.sequential)
            print(f"post-dial delay (caller INVITE sent -> counterpart INVITE received), {len(delays)} calls: "
                  f"{summary(delays)}")
        if args.calls:
            since = datetime.now().astimezone()
            time.sleep(STATS_FLUSH_SECONDS)  # the sequential calls' writes counted before the load's
            warm_peak = None
            if args.warmup_concurrent:
                with RssWatch(stack.service.pid) as warm:
                    load(stack, workdir, 3 * args.warmup_concurrent, args.rate, args.warmup_concurrent, args.talk_ms)
                warm_peak = warm.peak
                time.sleep(STATS_FLUSH_SECONDS)
                asyncio.run(far_end_counts(stack, since))  # the warm-up's rows settled, then not counted
                since = datetime.now().astimezone()
            inserted, updated, commits = asyncio.run(row_writes(stack))
            parts = {"service": [stack.service.pid], "asterisk": asterisk_pids(stack.asterisk)}
            calibration = calibration_ms()  # the VM's speed now: figures of two hours compare only with it
            before, kernel_before = usage(parts), system_seconds(stack.service.pid)
            metrics_url = f"http://{stack.settings.http_host}:{stack.settings.http_port}/metrics"
            scraped = scrape(metrics_url)
            rss = RssWatch(stack.service.pid, args.rss_every or 1.0)
            with rss:
                if args.profile:
                    with Profiler(stack.service.pid, args.profile):
                        code, elapsed = load(stack, workdir, args.calls, args.rate, args.concurrent, args.talk_ms)
                        asyncio.run(far_end_counts(stack, since))  # the recordings' fetch and sealing too
                else:
                    code, elapsed = load(stack, workdir, args.calls, args.rate, args.concurrent, args.talk_ms)
            counts = asyncio.run(far_end_counts(stack, since))
            used = {part: seconds - before[part] for part, seconds in usage(parts).items()}
            service_kernel = system_seconds(stack.service.pid) - kernel_before
            traffic = ari_traffic(scraped, scrape(metrics_url), counts["calls"])
            time.sleep(STATS_FLUSH_SECONDS)
            inserted_after, updated_after, commits_after = asyncio.run(row_writes(stack))
            channels, bridges = stack.leftovers(10)
            print(f"load: {args.calls} calls at {args.rate}/s, up to {args.concurrent} at once, "
                  f"{args.talk_ms} ms talk, {'recorded' if args.record else 'not recorded'}; SIPp caller exit {code}, {elapsed:.1f} s")
            print(f"  far end: {counts['answered']}/{counts['calls']} answered, "
                  f"{counts['recordings']} verified recordings, {counts['recordings_with_audio']} with audio; "
                  f"service setup p50 {counts['setup_p50']} ms p95 {counts['setup_p95']} ms; "
                  f"ring->bridge p95 {counts['ring_to_bridge_p95'] or 0:.3f} s")
            print(f"  left in Asterisk: {len(channels)} channels, {len(bridges)} bridges")
            print(f"  call-row writes: {inserted_after - inserted} inserts, {updated_after - updated} updates "
                  f"({(updated_after - updated) / max(1, counts['calls']):.1f} updates per call); "
                  f"{(commits_after - commits) / max(1, counts['calls']):.1f} database transactions per call"
                  " (the benchmark's own few included)")
            print("  cpu: " + ", ".join(f"{part} {seconds:.1f} s ({seconds / max(1, counts['calls']) * 1000:.0f} ms"
                                        " per call)" for part, seconds in used.items())
                  + f"; the service's in the kernel: {service_kernel:.1f} s; calibration before {calibration:.0f} ms")
            print("\n".join(f"  {line}" for line in traffic))
            if warm_peak is not None:
                extra = args.concurrent - args.warmup_concurrent
                print(f"  service RSS: warm-up peak ({args.warmup_concurrent} at once) {warm_peak / 1024:.1f} MiB,"
                      f" load peak ({args.concurrent} at once) {rss.peak / 1024:.1f} MiB:"
                      f" {(rss.peak - warm_peak) / max(1, extra):.1f} KiB per additional active call")
            if args.rss_every:
                growth, rows = rss_trend(rss.samples, args.rate, args.calls)
                print(f"  service RSS: idle {rss.idle / 1024:.1f} MiB, peak {rss.peak / 1024:.1f} MiB;"
                      f" {growth:+.1f} KiB per 1000 calls placed after the first quarter")
                print("\n".join(f"    {row}" for row in rows))
            if receiver is not None:
                print(f"  webhook events received: {sum(receiver.received.values())}"
                      f" ({dict(receiver.received)}), sequential calls' included")
            if args.profile:
                print(report(args.profile))
    if receiver is not None:
        receiver.close()
    print(f"work files: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
