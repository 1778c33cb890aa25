"""Simulator settings: fixed ones (`SimulatorConfig`) and runtime-mutable fault knobs (`Faults`).

The app reads the config live on every request, so tests may change attributes while the server
runs. `Faults` is shared between the server thread and test code, so its consuming operations
(error queues, disconnect counter) take a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ._knobs import JOB_KNOBS, KnobError, parse_knob

ERROR_KINDS = ("submit", "poll", "content")
"""Error-injection queues: `<kind>_errors`. The signed storage URL counts as content."""
_INJECTABLE = range(400, 600)


@dataclass
class ErrorRule:
    """Answer the next `count` matching requests with `status` (and `Retry-After` if given)."""

    status: int
    count: int = 1
    retry_after: float | None = None

    @classmethod
    def parse(cls, value: Any) -> ErrorRule:
        if isinstance(value, ErrorRule):
            return value
        if not isinstance(value, Mapping):
            raise KnobError(f"error rule must be an object like {{'status': 503, 'count': 1}}, got {value!r}")
        unknown = set(value) - {"status", "count", "retry_after"}
        if unknown:
            raise KnobError(
                f"error rule has unknown keys {sorted(unknown)}; known: status, count, retry_after"
            )
        status, count, retry = value.get("status"), value.get("count", 1), value.get("retry_after")
        if isinstance(status, bool) or not isinstance(status, int) or status not in _INJECTABLE:
            raise KnobError(f"error rule status must be an HTTP error code 400-599, got {status!r}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise KnobError(f"error rule count must be a positive integer, got {count!r}")
        if retry is not None and (
            isinstance(retry, bool) or not isinstance(retry, (int, float)) or retry < 0
        ):
            raise KnobError(f"error rule retry_after must be a non-negative number or null, got {retry!r}")
        return cls(status=status, count=count, retry_after=retry)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "count": self.count, "retry_after": self.retry_after}


@dataclass
class Faults:
    """Global fault knobs; per-job markers/headers override the first ten (see `_knobs`)."""

    outcome: str = "completed"
    webhook: str = "normal"
    copies: int = 1
    delay: float = 0.0
    outputs: int = 1
    bytes: int | None = None
    """Output size; None = `SimulatorConfig.content_bytes`."""
    gone: bool = False
    """Read live: turning it on makes content of already completed jobs answer 410."""
    pending: float | None = None
    """None = `SimulatorConfig.pending_seconds`."""
    in_progress: float | None = None
    """None = `SimulatorConfig.in_progress_seconds`."""
    rate: float | None = None
    """Content throttle in bytes/s, read live; None = unthrottled."""
    submit_errors: list[ErrorRule] = field(default_factory=list)
    poll_errors: list[ErrorRule] = field(default_factory=list)
    content_errors: list[ErrorRule] = field(default_factory=list)
    submit_disconnects: int = 0
    """The next N valid submits drop the connection after reading the request, without an answer."""
    disconnect_creates_job: bool = True
    """Whether a dropped submit still creates its job (the dangerous 'outcome unknown' case)."""
    poll_latency: float = 0.0
    """Seconds every poll is held before its answer (read live): polls of one job by two workers at
    once then overlap, and the admin stats count them (`max_concurrent`)."""
    submit_latency: float = 0.0
    """Seconds every valid submit is held before its job is created and answered (read live): a test
    can stop the caller while its submit is in flight (the job is created all the same)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {}
            for f in fields(self):
                if f.name.startswith("_"):
                    continue
                value = getattr(self, f.name)
                if f.name.endswith("_errors"):
                    value = [ErrorRule.parse(rule).to_dict() for rule in value]
                out[f.name] = value
            return out

    def update(self, changes: Mapping[str, Any]) -> None:
        """Merge `changes` (JSON-like) into the current faults; all-or-nothing."""
        parsed = {name: _parse_fault(name, value) for name, value in changes.items()}
        with self._lock:
            for name, value in parsed.items():
                setattr(self, name, value)

    def reset(self) -> None:
        defaults = Faults()
        with self._lock:
            for f in fields(self):
                if not f.name.startswith("_"):
                    setattr(self, f.name, getattr(defaults, f.name))

    def take_error(self, kind: str) -> ErrorRule | None:
        """Consume one injected error for a request of `kind` (submit, poll, content), if queued."""
        with self._lock:
            queue: list[Any] = getattr(self, f"{kind}_errors")
            if not queue:
                return None
            rule = ErrorRule.parse(queue[0])
            queue[0] = ErrorRule(rule.status, rule.count - 1, rule.retry_after)
            if rule.count <= 1:
                queue.pop(0)
            return rule

    def take_disconnect(self) -> bool:
        """Consume one pending submit disconnect, if any."""
        with self._lock:
            if self.submit_disconnects > 0:
                self.submit_disconnects -= 1
                return True
            return False


def _parse_fault(name: str, value: Any) -> Any:
    if name in JOB_KNOBS:
        if value is None and name in ("bytes", "pending", "in_progress", "rate"):
            return None
        return parse_knob(name, value)
    if name in {f"{kind}_errors" for kind in ERROR_KINDS}:
        if not isinstance(value, list):
            raise KnobError(f"{name} must be a list of error rules")
        return [ErrorRule.parse(rule) for rule in value]
    if name == "submit_disconnects":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise KnobError(f"submit_disconnects must be a non-negative integer, got {value!r}")
        return value
    if name in ("poll_latency", "submit_latency"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 60:
            raise KnobError(f"{name} must be a number of seconds from 0 to 60, got {value!r}")
        return float(value)
    if name == "disconnect_creates_job":
        if not isinstance(value, bool):
            raise KnobError(f"disconnect_creates_job must be true or false, got {value!r}")
        return value
    known = [f.name for f in fields(Faults) if not f.name.startswith("_")]
    raise KnobError(f"unknown fault {name!r}; known: {', '.join(known)}")


@dataclass
class SimulatorConfig:
    """How the simulator behaves. Everything except `admin` is read live per request."""

    api_key: str | None = None
    """Required bearer key; None accepts any non-empty key."""
    webhook_secret: str | None = None
    """Signing secret; None sends webhooks without `X-OpenRouter-Signature`."""
    workspace_webhook_url: str | None = None
    """Webhook target for jobs submitted without `callback_url`."""
    pending_seconds: float = 2.0
    in_progress_seconds: float = 5.0
    content_bytes: int = 256 * 1024
    """Default size of each output, in bytes."""
    signed_url_ttl: int = 3600
    """Seconds from completion until the signed `urls` expire (`expires_at`)."""
    polling_url_style: str = "absolute"
    """'absolute' (`http://host/api/v1/videos/<id>`) or 'relative' (`/api/v1/videos/<id>`)."""
    public_url: str | None = None
    """Base URL used in returned URLs (e.g. behind a proxy); None = the request's own base URL."""
    webhook_include_signed_urls: bool = False
    """Add `urls` and `expires_at` to completed webhook data (not seen in real captures)."""
    webhook_attempts: int = 5
    webhook_backoff: float = 0.5
    """Delay before the first retry; doubles after each failed attempt."""
    webhook_timeout: float = 10.0
    """Per-attempt timeout of a webhook POST."""
    webhook_concurrency: int = 64
    """Webhook POSTs in flight at once, over all jobs and copies; the rest wait their turn. (Thousands
    at once would only queue in the HTTP client's pool, where they time out.)"""
    webhook_cafile: str | None = None
    """CA bundle (PEM) trusted for https webhook targets, e.g. a local TLS proxy's own certificate;
    None = the system's default trust store."""
    admin: bool = True
    """Mount the `/_simulator/*` admin endpoints (decided when the app is created)."""
    catalog: list[dict[str, Any]] | None = None
    """Model catalog; None = the built-in `CATALOG`."""
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        if self.polling_url_style not in ("absolute", "relative"):
            raise ValueError("polling_url_style must be 'absolute' or 'relative'")
        parse_knob("bytes", self.content_bytes)
