"""The receiver's counters and gauges, exposed at /metrics by the official Prometheus client.

Each app has its own registry (tests run many apps in one process). Every metric is declared once,
below, with its label name and the label values it may take: a value from outside (a poll answer's
status, say) that is not one of them is counted as `other`, so upstream text can neither add series
nor reach the exposition text. The webhook hot path increments children bound once (`deliveries`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from openrouter_video import ALL_STATUSES, VERIFY_REASONS

OTHER = "other"
DELIVERY_OUTCOMES = ("accepted", "duplicate", "test", "rejected", "too_large", "store_unavailable")

# name: (help, label name or None, the label's values)
_COUNTERS: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "receiver_deliveries_total": (
        "Webhook deliveries answered, by outcome (accepted, duplicate, test, rejected, too_large, "
        "store_unavailable).",
        "outcome",
        DELIVERY_OUTCOMES,
    ),
    "receiver_deliveries_applied_total": (
        "Stored deliveries applied to their job (applied) or not usable as an event (unprocessed).",
        "result",
        ("applied", "unprocessed"),
    ),
    "receiver_verification_failures_total": (
        "Webhook verification failures by reason.",
        "reason",
        VERIFY_REASONS,
    ),
    "receiver_downloads_total": (
        "Output downloads by result.",
        "result",
        ("done", "retry", "failed", "gone", "waiting_for_space"),
    ),
    "receiver_download_bytes_total": ("Bytes of video downloaded and committed.", None, ()),
    "receiver_fallback_polls_total": (
        "Fallback polls of jobs whose webhook did not arrive, by result.",
        "result",
        ("not_found", "forbidden", "error", *ALL_STATUSES),
    ),
}
_GAUGES = {
    "receiver_deliveries_pending": "Deliveries stored and acknowledged but not applied to their job yet.",
    "receiver_fetch_queue_depth": "Outputs not yet downloaded (pending or downloading).",
    "receiver_disk_free_bytes": "Free bytes on the data dir's filesystem (readiness fails under RECEIVER_MIN_FREE_BYTES).",
    "receiver_waits_open": "Long-polls (GET /jobs/{id}?wait=) waiting in this process.",
    "receiver_event_streams_open": "GET /events streams open in this process.",
    "receiver_notifications_pending": "Notifications to apps not delivered yet (waiting for an attempt).",
    "receiver_notifications_dead": "Notifications to apps given up after the last attempt (replay: "
    "POST /notifications/{id}/retry).",
}
# Signed (OpenRouter's timestamp, whole seconds) to committed here: delivery delay plus our own.
_STORED_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
UNMATCHED = "unmatched"  # the request-latency label of a path no route matched


class Metrics:
    """`routes`: the route templates (`/jobs/{job_id}`), the request-latency histogram's label values."""

    def __init__(self, routes: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry()
        self._counters = {
            name: Counter(name, help_text, [label] if label else [], registry=self.registry)
            for name, (help_text, label, _) in _COUNTERS.items()
        }
        self._children: dict[tuple[str, str | None], Any] = {}
        # The hot path's children, bound once: intake only calls .inc() on them.
        self.deliveries = {o: self.series("receiver_deliveries_total", outcome=o) for o in DELIVERY_OUTCOMES}
        self.webhook_stored = Histogram(
            "receiver_webhook_stored_seconds",
            "From a webhook's signature timestamp (whole seconds) to its delivery committed here.",
            buckets=_STORED_BUCKETS,
            registry=self.registry,
        )
        requests = Histogram(
            "receiver_request_seconds",
            "Time to answer a request, by route template (not the raw path).",
            ["route"],
            buckets=_REQUEST_BUCKETS,
            registry=self.registry,
        )
        # Every label value bound once, here: a request only looks its route up and observes.
        self.requests = {route: requests.labels(route) for route in (*routes, UNMATCHED)}
        self._gauges = {name: Gauge(name, text, registry=self.registry) for name, text in _GAUGES.items()}
        self._jobs = _JobsByStatus()
        self.registry.register(self._jobs)

    def series(self, name: str, **labels: str) -> Any:
        """The counter child for these labels (an unknown value becomes `other`); `.inc()` it."""
        _, label, allowed = _COUNTERS[name]
        value = None
        if label is not None:
            value = labels[label] if labels[label] in allowed else OTHER
        key = (name, value)
        child = self._children.get(key)
        if child is None:
            counter = self._counters[name]
            child = self._children[key] = counter.labels(value) if label is not None else counter
        return child

    def add(self, series: Any, amount: float = 1) -> None:
        series.inc(amount)

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        self.series(name, **labels).inc(amount)

    def value(self, name: str, **labels: str) -> float:
        _, label, allowed = _COUNTERS[name]
        wanted = {label: labels[label] if labels[label] in allowed else OTHER} if label else {}
        return self.registry.get_sample_value(name, wanted) or 0.0

    def set_gauge(self, name: str, value: float) -> None:
        """A gauge's value, refreshed from the stores by the /metrics handler before it renders."""
        self._gauges[name].set(value)

    def set_jobs_by_status(self, counts: dict[str, int]) -> None:
        """`receiver_jobs{status}`, as the store counted them (refreshed at scrape time)."""
        self._jobs.counts = counts

    def render(self) -> str:
        return generate_latest(_WithoutCreated(self.registry)).decode()


class _JobsByStatus:
    """The jobs gauge: every known status always present (0 when none), unknown ones as `other`."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def describe(self) -> Iterable[Any]:
        return [GaugeMetricFamily("receiver_jobs", _JOBS_HELP, labels=["status"])]

    def collect(self) -> Iterable[Any]:
        counts = dict.fromkeys((*ALL_STATUSES, OTHER), 0)
        for status, count in self.counts.items():
            counts[status if status in counts and status != OTHER else OTHER] += count
        family = GaugeMetricFamily("receiver_jobs", _JOBS_HELP, labels=["status"])
        for status, count in counts.items():
            family.add_metric([status], count)
        yield family


_JOBS_HELP = "Job records by status."


class _WithoutCreated:
    """The registry minus the `*_created` timestamps the client adds to counters (noise on a dashboard)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Any]:
        for family in self.registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family
