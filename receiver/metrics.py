"""The receiver's counters and gauges, exposed at /metrics by the official Prometheus client.

Each app has its own registry (tests run many apps in one process). Every metric is declared once,
below, with its label name and the label values it may take: a value from outside (a poll answer's
status, say) that is not one of them is counted as `other`, so upstream text can neither add series
nor reach the exposition text. The webhook hot path increments children bound once (`deliveries`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

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
}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._counters = {
            name: Counter(name, help_text, [label] if label else [], registry=self.registry)
            for name, (help_text, label, _) in _COUNTERS.items()
        }
        self._children: dict[tuple[str, str | None], Any] = {}
        # The hot path's children, bound once: intake only calls .inc() on them.
        self.deliveries = {o: self.series("receiver_deliveries_total", outcome=o) for o in DELIVERY_OUTCOMES}

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

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        Gauge(name, _GAUGES[name], registry=self.registry).set_function(read)

    def render(self) -> str:
        return generate_latest(_WithoutCreated(self.registry)).decode()


class _WithoutCreated:
    """The registry minus the `*_created` timestamps the client adds to counters (noise on a dashboard)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Any]:
        for family in self.registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family
