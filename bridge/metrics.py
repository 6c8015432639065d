"""Prometheus metrics, through prometheus-client: the process's own (CPU,
memory, open files, start time) come with its default registry.

Every name is documented in docs/operations.md, beside the alert rules
(monitoring/alerts.yml) and the dashboard (monitoring/grafana-dashboard.json) that use
them. No label ever carries a phone number: labels are dispositions, event
types, outcomes and kinds only.

Counters are incremented where things happen; gauges of state the service
holds (ARI connected, draining, active calls, database up, the webhook
backlog, the pool) are set when /metrics is scraped (bridge/api/health.py).
"""
from __future__ import annotations

import asyncio
import collections

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

# -- calls ---------------------------------------------------------------------------
calls_total = Counter("masking_calls_total", "Calls by final disposition (ARI path).", ["disposition"])
call_setup_seconds = Histogram(
    "masking_call_setup_seconds", "From the caller entering the app to the counterpart being dialed.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
agi_calls_total = Counter("masking_agi_calls_total",
                          "Calls the FastAGI fallback served, by outcome (connect or the rejection reason).",
                          ["outcome"])
active_calls = Gauge("masking_active_calls", "Calls in progress in this process.")

# -- webhooks ------------------------------------------------------------------------
webhooks_delivered_total = Counter("masking_webhooks_delivered_total", "Webhook deliveries the receiver accepted.",
                                   ["event_type"])
webhooks_failed_total = Counter("masking_webhooks_failed_total",
                                "Webhook delivery attempts that failed (each retry counts).", ["event_type"])
webhooks_dead_lettered_total = Counter("masking_webhooks_dead_lettered_total",
                                       "Webhook events given up on after MASKING_WEBHOOK_MAX_ATTEMPTS.",
                                       ["event_type"])
webhooks_pending = Gauge("masking_webhooks_pending", "Webhook events waiting to be delivered (the backlog).")
webhooks_dead = Gauge("masking_webhooks_dead", "Dead-lettered webhook events not yet retried.")

# -- Asterisk, ARI, database ---------------------------------------------------------
ari_connected = Gauge("masking_ari_connected", "1 while the ARI event websocket is connected.")
asterisk_fully_booted = Gauge("masking_asterisk_fully_booted", "1 while AMI reports Asterisk fully booted.")
asterisk_reloads_total = Counter("masking_asterisk_reloads_total", "Asterisk module reloads seen over AMI.")


class Tally:
    """A counter by labels kept as plain integers and exposed through
    prometheus-client's custom-collector interface, for the counts a call
    makes dozens of: a request's or an event's `inc()` through a Counter's
    child is three Python calls and a lock, `tally[labels] += 1` none. Only
    the event loop's thread counts; a scrape copies the counts in one step."""

    def __init__(self, name: str, documentation: str, labelnames: list[str]):
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self.counts: collections.Counter[tuple[str, ...]] = collections.Counter()
        REGISTRY.register(self)

    def collect(self):
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in list(self.counts.items()):
            family.add_metric(labels, value)
        yield family

    def describe(self):
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)


ari_requests_total = Tally(
    "masking_ari_requests_total",
    "ARI REST requests made, by operation (method and path template, no ids), with their outcome"
    " (ok, not_found, conflict, error, unreachable, cancelled).", ["operation", "outcome"])
ari_events_total = Tally("masking_ari_events_total", "ARI events received on the websocket, by type.", ["type"])
database_up = Gauge("masking_database_up", "1 if PostgreSQL answered the last scrape's queries.")
trunk_registered = Gauge("masking_trunk_registered", "1 while the trunk's outbound registration holds.",
                         ["trunk"])

# -- the Kamailio edge (docs/scaling.md), polled by bridge/stack/edge_watch.py ---------
edge_up = Gauge("masking_edge_up", "1 while the edge's RPC answers.")
edge_node_state = Gauge("masking_edge_node_state", "1 for each node's state as the edge sees it (dispatcher).",
                        ["node", "state"])

# -- the service's own state ---------------------------------------------------------
draining = Gauge("masking_draining", "1 while the service drains (SIGTERM): new calls go to the fallback.")
spool_depth = Gauge("masking_spool_depth", "Call-row writes waiting in the database-outage spool.")
event_loop_lag_seconds = Histogram(
    "masking_event_loop_lag_seconds", "How late the event loop woke a timer: time every call waits on.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))

# -- pool and retention --------------------------------------------------------------
pool_numbers_in_use = Gauge("masking_pool_numbers_in_use", "Pool numbers with live sessions.")
pool_numbers_free = Gauge("masking_pool_numbers_free", "Pool numbers with no live session.")
retention_purged_total = Counter("masking_retention_purged_total", "Rows purged past their retention, by kind.",
                                 ["kind"])


# -- privacy clocks (subject requests' 30 days; a breach's assessment and PDPC notification) --
privacy_overdue = Gauge("masking_privacy_overdue",
                        "Open privacy obligations past their deadline, by clock (subject_request,"
                        " incident_assessment, incident_pdpc_notification).", ["clock"])


async def watch_event_loop_lag(interval: float = 0.25) -> None:
    """Observe, every `interval`, how much later than asked a sleep returns:
    the time a blocking call or a burst of work kept every call (and the ARI
    websocket, which Asterisk drops after 100 ms unread) waiting."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(interval)
        event_loop_lag_seconds.observe(max(0.0, loop.time() - asked - interval))


def render() -> tuple[bytes, str]:
    """The text exposition of every metric in this process, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
