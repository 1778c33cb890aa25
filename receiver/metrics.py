"""In-process counters rendered as Prometheus text; cheap enough for the webhook hot path."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

Series = tuple[str, tuple[tuple[str, str], ...]]


class Metrics:
    _HELP = {
        "receiver_deliveries_total": "Webhook deliveries answered, by outcome (accepted, duplicate, rejected, "
        "too_large, store_unavailable).",
        "receiver_deliveries_applied_total": "Stored deliveries applied to their job (applied) or not usable as "
        "an event (unprocessed).",
        "receiver_deliveries_pending": "Deliveries stored and acknowledged but not applied to their job yet.",
        "receiver_verification_failures_total": "Webhook verification failures by reason.",
        "receiver_downloads_total": "Output downloads by result.",
        "receiver_download_bytes_total": "Bytes of video downloaded and committed.",
        "receiver_fallback_polls_total": "Fallback polls of jobs whose webhook did not arrive, by result.",
        "receiver_fetch_queue_depth": "Outputs not yet downloaded (pending or downloading).",
    }

    def __init__(self) -> None:
        self.counters: Counter[Series] = Counter()
        self.gauges: dict[str, Callable[[], float]] = {}

    @staticmethod
    def series(name: str, **labels: str) -> Series:
        """The key of one labelled counter; hot paths build it once and `add` to it."""
        return (name, tuple(sorted(labels.items())))

    def add(self, series: Series, amount: float = 1) -> None:
        self.counters[series] += amount

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        self.counters[self.series(name, **labels)] += amount

    def value(self, name: str, **labels: str) -> float:
        return self.counters[self.series(name, **labels)]

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        self.gauges[name] = read

    def render(self) -> str:
        lines: list[str] = []
        by_name: dict[str, list[str]] = {}
        for (name, labels), value in sorted(self.counters.items()):
            label_text = ",".join(f'{k}="{v}"' for k, v in labels)
            by_name.setdefault(name, []).append(
                f"{name}{{{label_text}}} {value:g}" if label_text else f"{name} {value:g}"
            )
        for name, samples in by_name.items():
            lines += [f"# HELP {name} {self._HELP.get(name, name)}", f"# TYPE {name} counter", *samples]
        for name, read in sorted(self.gauges.items()):
            lines += [
                f"# HELP {name} {self._HELP.get(name, name)}",
                f"# TYPE {name} gauge",
                f"{name} {read():g}",
            ]
        return "\n".join(lines) + "\n"
