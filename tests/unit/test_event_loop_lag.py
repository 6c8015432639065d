"""The event-loop lag metric: a loop kept busy shows as lag, an idle one does not."""
from __future__ import annotations

import asyncio
import time

from bridge import metrics


def observed() -> tuple[float, float]:
    """(count, count above 100 ms) of the lag histogram so far."""
    samples = {(s.name, s.labels.get("le")): s.value for s in metrics.event_loop_lag_seconds.collect()[0].samples}
    count = samples[("masking_event_loop_lag_seconds_count", None)]
    return count, count - samples[("masking_event_loop_lag_seconds_bucket", "0.1")]


async def test_a_blocking_call_in_the_event_loop_shows_as_lag():
    count_before, slow_before = observed()
    watcher = asyncio.create_task(metrics.watch_event_loop_lag(interval=0.01))
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # what a blocking call does to every call in the process
        await asyncio.sleep(0.05)
    finally:
        watcher.cancel()
    count, slow = observed()
    assert count > count_before
    assert slow > slow_before, "the blocked loop was not seen as a late wake-up"
