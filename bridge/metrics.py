"""Prometheus metrics, rendered by hand (text format 0.0.4): a few counters,
gauges and one histogram do not need a client library. No label ever carries a
phone number: labels are dispositions and event types only."""
from __future__ import annotations

import threading
from collections import defaultdict


class Counter:
    def __init__(self, name: str, help_text: str, label: str | None = None):
        self.name, self.help, self.label = name, help_text, label
        self.values: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def inc(self, label_value: str = "", amount: float = 1) -> None:
        with self._lock:
            self.values[label_value] += amount

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        for value, count in sorted(self.values.items()):
            labels = f'{{{self.label}="{value}"}}' if self.label else ""
            lines.append(f"{self.name}{labels} {count:g}")
        return lines


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]):
        self.name, self.help, self.buckets = name, help_text, buckets
        self.counts = [0] * len(buckets)
        self.total, self.sum = 0, 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += 1
        self.sum += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for bound, count in zip(self.buckets, self.counts):
            lines.append(f'{self.name}_bucket{{le="{bound:g}"}} {count}')
        lines += [f'{self.name}_bucket{{le="+Inf"}} {self.total}', f"{self.name}_sum {self.sum:g}",
                  f"{self.name}_count {self.total}"]
        return lines


def gauge(name: str, help_text: str, value: float) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]


def labelled_gauge(name: str, help_text: str, label: str, values: dict[str, float]) -> list[str]:
    """One gauge per label value (trunk names: configuration, never a number)."""
    return [f"# HELP {name} {help_text}", f"# TYPE {name} gauge",
            *(f'{name}{{{label}="{key}"}} {value:g}' for key, value in sorted(values.items()))]


calls_total = Counter("masking_calls_total", "Calls by final disposition.", "disposition")
call_setup_seconds = Histogram(
    "masking_call_setup_seconds", "From the caller entering the app to the counterpart being dialed.",
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
webhook_failures_total = Counter("masking_webhook_failures_total", "Failed webhook deliveries.", "event_type")
webhooks_delivered_total = Counter("masking_webhooks_delivered_total", "Delivered webhooks.", "event_type")
retention_purged_total = Counter("masking_retention_purged_total",
                                 "Rows purged past their retention, by kind.", "kind")
