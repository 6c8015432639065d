"""Benchmark: calls on a shared (pin_mode) number, keying the PIN as RFC 2833.

Starts its own Asterisk, database and service (bench/stack.py), puts
--sessions live sessions on one shared number (one driver, a customer each),
then:
  1. places --sequential calls one at a time, each keying a correct PIN as
     RFC 2833 telephone-events in early media (captures from
     tests/support/dtmf.py), and measures the post-PIN delay on the wire: the
     caller's last telephone-event packet sent (sniffed on loopback, same
     clock as SIPp's message log) -> the counterpart's INVITE received (SIPp's
     message log). As a cross-check it also gives the delay from the end of
     the capture as scheduled: the caller's first 183 received (when SIPp
     starts the capture) plus the capture's own last-packet offset;
  2. places --calls calls at --rate calls/s on the same number, each from a
     random session (a customer calling the driver, or the driver calling a
     customer: the PIN, not the caller's number, says which), talking
     --talk-ms, and counts success at the far end: call rows `answered` with
     the session whose PIN was keyed and the right direction, and the
     counterpart's INVITE for the right number answered, ACKed and hung up;
     failures by disposition/reject_reason; channels and bridges left in
     Asterisk (ARI).

SIPp plays one fixed capture per scenario, so each call of the load is its own
SIPp caller process (started on schedule by this script), against one SIPp
counterpart process answering all of them.

    .venv/bin/python -m bench.pin_calls --sessions 1000 --sequential 20 --calls 60 --rate 3
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import re
import struct
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from bench.stack import bench_stack, message_times, summary
from bridge.sessions.models import MaskingSession, SessionRequest
from bridge.store import Store
from tests.support.dtmf import dtmf_pcap
from tests.support.rtp import RtpSniffer
from tests.support.sipp import Sipp, SippResult, render
from tests.support.stack import Stack

VIRTUAL, DRIVER = "+6562000020", "+6582000020"
TELEPHONE_EVENT = 101  # the payload type uac_pin.xml offers


async def provision(stack: Stack, sessions: int, concurrency: int = 8) -> list[MaskingSession]:
    """`sessions` live sessions on one shared number, one driver in all of them."""
    store = await Store.connect(stack.dsn, stack.keys)
    try:
        await store.numbers.add(VIRTUAL, pin_mode=True)
        gate = asyncio.Semaphore(concurrency)

        async def create(i: int) -> MaskingSession:
            async with gate:
                return (await store.sessions.create(SessionRequest(
                    f"+6593{i:06d}", DRIVER, ttl_seconds=3600, record=False, purpose="delivery_order",
                    pin_mode=True, virtual_number=VIRTUAL)))[0]

        return list(await asyncio.gather(*(create(i) for i in range(sessions))))
    finally:
        await store.close()


def capture_span(path: Path) -> float:
    """Seconds from a capture's first packet to its last (SIPp replays it on
    that schedule)."""
    data, offset, stamps = path.read_bytes(), 24, []
    while offset < len(data):
        seconds, micros, length, _ = struct.unpack("<IIII", data[offset:offset + 16])
        stamps.append(seconds + micros / 1e6)
        offset += 16 + length
    return stamps[-1] - stamps[0]


def caller(stack: Stack, workdir: Path, name: str, session: MaskingSession, from_driver: bool,
           talk_ms: int) -> tuple[Sipp, Path]:
    """A SIPp caller on the shared number keying `session`'s PIN, from the
    driver or from the session's customer."""
    scenario = render("uac_pin.xml", workdir, tag=f"{name}-", pcap=f"pcap/{name}.pcap", final_status="200",
                      final_next="connected")
    pcap = dtmf_pcap(session.pin, workdir / "pcap" / f"{name}.pcap")  # render made pcap/
    number = DRIVER if from_driver else session.participant_a
    return Sipp(workdir, scenario, ["-s", VIRTUAL, "-key", "caller", number, "-d", str(talk_ms),
                                    stack.sip_target], name), pcap


def sequential_post_pin(stack: Stack, workdir: Path, sessions: list[MaskingSession], count: int,
                        talk_ms: int) -> tuple[list[float], list[float], list[str]]:
    """Post-PIN delays (ms): from the last telephone-event packet sniffed, and
    from the capture's scheduled end; and what went wrong, per failed call."""
    sniffed, scheduled, problems = [], [], []
    for i, session in enumerate(random.sample(sessions, count)):
        uas = Sipp(workdir, render("uas_answer.xml", workdir), ["-rtp_echo", "-d", str(talk_ms)], f"pin-uas-{i}",
                   port=stack.counterpart_port).start()
        time.sleep(0.2)
        uac, pcap = caller(stack, workdir, f"pin-uac-{i}", session, from_driver=i % 2 == 0, talk_ms=talk_ms)
        with RtpSniffer(uac.media_port, from_port=True) as sent:
            uac.start()
            calling, counterpart = uac.wait(40), uas.wait(30)
        received = message_times(counterpart.messages, "received", "INVITE")
        early = [at for at, text in _responses(calling) if text.startswith("SIP/2.0 183")]
        if not (calling.succeeded and counterpart.succeeded and received and early):
            problems.append(f"call {i}: caller exit {calling.returncode}, counterpart exit {counterpart.returncode}")
            continue
        events = [at for at, pt in zip(sent.arrivals, sent.payload_types) if pt == TELEPHONE_EVENT]
        if events:
            sniffed.append((received[0] - events[-1]).total_seconds() * 1000)
        else:
            problems.append(f"call {i}: no telephone-event packet seen leaving the caller")
        scheduled.append((received[0] - (early[0] + timedelta(seconds=capture_span(pcap)))).total_seconds() * 1000)
    return sniffed, scheduled, problems


def _responses(result: SippResult) -> list[tuple[datetime, str]]:
    return [(m.at, m.text) for m in result.log() if m.received]


def load(stack: Stack, workdir: Path, sessions: list[MaskingSession], calls: int, rate: float,
         talk_ms: int) -> tuple[list[tuple[MaskingSession, bool]], list[SippResult], SippResult, float]:
    """`calls` callers started at `rate`/s, each on a random session; the
    counterpart answers them all."""
    uas = Sipp(workdir, render("uas_answer.xml", workdir), ["-rtp_echo", "-d", str(talk_ms)], "load-uas",
               port=stack.counterpart_port)
    uas.command[uas.command.index("-m") + 1] = str(calls)
    uas.start()
    time.sleep(0.3)
    plan = [(session, random.random() < 0.5) for session in random.sample(sessions, calls)]
    callers = []
    started = time.monotonic()
    for i, (session, from_driver) in enumerate(plan):
        time.sleep(max(0.0, started + i / rate - time.monotonic()))
        callers.append(caller(stack, workdir, f"load-uac-{i}", session, from_driver, talk_ms)[0].start())
    results = [c.wait(max(10.0, started + calls / rate + talk_ms / 1000 + 60 - time.monotonic())) for c in callers]
    elapsed = time.monotonic() - started
    return plan, results, uas.wait(30), elapsed


async def far_end(stack: Stack, plan: list[tuple[MaskingSession, bool]], since: datetime,
                  settle: float = 20) -> dict:
    """What the database holds for the load's calls, once none is in progress."""
    store = await Store.connect(stack.dsn, stack.keys)
    try:
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline and await store.pool.fetchval(
                "SELECT count(*) FROM calls WHERE virtual_number = $1 AND started_at >= $2"
                " AND disposition = 'in_progress'", VIRTUAL, since):
            await asyncio.sleep(0.5)
        rows = await store.pool.fetch(
            "SELECT session_id, direction, disposition, reject_reason, started_at, answered_at, ended_at,"
            " callee_channel_id, pin_attempts, setup_ms FROM calls WHERE virtual_number = $1 AND started_at >= $2", VIRTUAL, since)
    finally:
        await store.close()
    expected = {session.id: "b_to_a" if from_driver else "a_to_b" for session, from_driver in plan}
    def verdict(row) -> str:
        if row["disposition"] != "answered":
            return f"{row['disposition']}/{row['reject_reason']}"
        if not (row["answered_at"] and row["callee_channel_id"]):
            return "answered/no counterpart"
        if expected.get(row["session_id"]) != row["direction"]:
            return "answered/wrong session or direction"
        return "answered/PIN keyed again" if row["pin_attempts"] != 1 else "ok"

    verdicts = [verdict(r) for r in rows]
    good = [r for r, v in zip(rows, verdicts) if v == "ok"]
    failures = Counter(v for v in verdicts if v != "ok")
    missing = len(set(expected) - {r["session_id"] for r in rows})
    edges = sorted([(r["started_at"], 1) for r in rows if r["ended_at"]] +
                   [(r["ended_at"], -1) for r in rows if r["ended_at"]])
    setup = sorted(r["setup_ms"] for r in good if r["setup_ms"] is not None)
    return {"rows": len(rows), "peak": max(itertools.accumulate(d for _, d in edges), default=0), "good": len(good), "failures": failures, "sessions_without_row": missing,
            "setup_p50": setup[len(setup) // 2] if setup else None,
            "setup_p95": setup[min(len(setup) - 1, round(0.95 * (len(setup) - 1)))] if setup else None}


def counterpart_calls(result: SippResult, plan: list[tuple[MaskingSession, bool]]) -> dict:
    """The counterpart's side: INVITEs for the right numbers, each ACKed (bridged)
    and hung up by the bridge."""
    by_call: dict[str, dict] = {}
    for message in result.log():
        if message.received:
            by_call.setdefault(message.call_id, {}).setdefault(message.text.split(" ", 1)[0], message.text)
    invited = Counter(re.search(r"^To: <sip:([^@]+)@", c["INVITE"], re.M).group(1)
                      for c in by_call.values() if "INVITE" in c)
    wanted = Counter(session.participant_a if from_driver else DRIVER for session, from_driver in plan)
    return {"invites": sum(invited.values()), "bridged": sum(1 for c in by_call.values() if {"INVITE", "ACK", "BYE"} <= set(c)),
            "right_numbers": invited == wanted}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1000, help="live sessions on the shared number")
    parser.add_argument("--sequential", type=int, default=20)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--rate", type=float, default=3)
    parser.add_argument("--talk-ms", type=int, default=3000)
    args = parser.parse_args()
    if max(args.sequential, args.calls) > args.sessions:
        parser.error("each call takes a session of its own: --sessions must be at least --sequential and --calls")

    workdir = Path(tempfile.mkdtemp(prefix="masking-bench-pin-"))
    # A call lasts about the PIN entry, the answer delay and the talk.
    concurrent = int(args.rate * (args.talk_ms / 1000 + 6)) + 10
    with bench_stack(workdir, concurrent) as stack:
        started = time.monotonic()
        sessions = asyncio.run(provision(stack, args.sessions))
        print(f"Asterisk: {stack.asterisk.cli('core show version').strip()}; cores: {os.cpu_count()}; "
              f"{args.sessions} sessions on {VIRTUAL} ({len({s.pin for s in sessions})} distinct PINs) "
              f"in {time.monotonic() - started:.1f} s")
        if args.sequential:
            sniffed, scheduled, problems = sequential_post_pin(stack, workdir, sessions, args.sequential,
                                                               min(args.talk_ms, 500))
            print(f"post-PIN delay, {len(sniffed)}/{args.sequential} calls (caller's last RFC 2833 packet sent,"
                  f" sniffed -> counterpart INVITE received): {summary(sniffed)}")
            print(f"  from the capture's scheduled end (183 received + capture span): {summary(scheduled)}")
            for problem in problems:
                print(f"  {problem}")
        if args.calls:
            since = datetime.now().astimezone()
            plan, results, uas, elapsed = load(stack, workdir, sessions, args.calls, args.rate, args.talk_ms)
            db = asyncio.run(far_end(stack, plan, since))
            far = counterpart_calls(uas, plan)
            channels, bridges = stack.leftovers(10)
            print(f"load: {args.calls} calls at {args.rate}/s on one number with {args.sessions} sessions, random"
                  f" session each ({sum(d for _, d in plan)} from the driver), {args.talk_ms} ms talk, not recorded;"
                  f" {elapsed:.1f} s; SIPp callers exit 0: {sum(r.succeeded for r in results)}/{args.calls}")
            print(f"  far end: {db['good']}/{args.calls} answered with the PIN's session and direction"
                  f" ({db['rows']} rows; sessions without a row: {db['sessions_without_row']});"
                  f" failures: {dict(db['failures']) or 'none'}; service setup p50 {db['setup_p50']} ms"
                  f" p95 {db['setup_p95']} ms; at most {db['peak']} calls at once")
            print(f"  counterpart: {far['invites']} INVITEs, {far['bridged']} answered+ACKed+hung up,"
                  f" numbers as the PINs say: {far['right_numbers']}")
            print(f"  left in Asterisk: {len(channels)} channels, {len(bridges)} bridges")
    print(f"work files: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
