"""What the SIPp benchmarks share: a stack of their own, and reading times
off SIPp's message logs.

The benchmarks start their own Asterisk, database and service on free ports
(as the integration tests do, `tests.support.stack.running_stack`), with
info-level logs and a long dial timeout so load does not turn into
no-answers.
"""
from __future__ import annotations

import re
import statistics
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

from tests.support.stack import Stack, running_stack

TIMESTAMP = re.compile(r"^-{10,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n(UDP message (?:sent|received)).*?\n\n(\S+)",
                       re.M)


@contextmanager
def bench_stack(workdir: Path, concurrent: int) -> Iterator[Stack]:
    """Asterisk, database and service for up to `concurrent` calls at once;
    everything removed after."""
    # Each call holds RTP and RTCP ports on both legs: 4 a call.
    with running_stack(workdir, rtp_ports=max(200, 6 * concurrent), MASKING_LOG_LEVEL="info",
                       MASKING_DIAL_TIMEOUT="30") as stack:
        yield stack


def message_times(messages: str, direction: str, first_word: str) -> list[datetime]:
    """Timestamps of the messages sent or received in a SIPp message log whose
    first word (method, or "SIP/2.0" for responses) is `first_word`."""
    return [datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f")
            for ts, kind, first in TIMESTAMP.findall(messages)
            if first == first_word and direction in kind]


def invite_times(messages: str, direction: str) -> list[datetime]:
    """Timestamps of INVITEs sent or received in a SIPp message log."""
    return message_times(messages, direction, "INVITE")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(values: list[float]) -> str:
    """p50, p95 and max of delays in milliseconds."""
    if not values:
        return "no samples"
    return (f"p50 {statistics.median(values):.1f} ms, p95 {percentile(values, 95):.1f} ms, "
            f"max {max(values):.1f} ms")
