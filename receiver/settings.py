"""The receiver's configuration: read from the environment in one place, secrets masked."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from openrouter_video import DEFAULT_BASE_URL, WEBHOOK_PATH

from .domain.notifications import DEFAULT_SCHEDULE


class SettingsError(Exception):
    """A missing or bad setting; the message names it and is shown as one line at start-up."""


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    api_key: Secret
    webhook_secrets: tuple[Secret, ...]
    base_url: str = DEFAULT_BASE_URL
    data_dir: str = "./data"
    # Where the records and the videos live (None: SQLite and the videos folder in the data dir).
    database_url: str | None = None
    content_url: str | None = None
    api_token: Secret | None = None
    public_url: str | None = None
    webhook_tolerance: int = 300
    max_body_bytes: int = 1024 * 1024
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    fallback_after: float = 300.0
    fallback_max_age: float = 24 * 3600.0
    poll_first_interval: float = 15.0
    poll_max_interval: float = 120.0
    download_concurrency: int = 2
    # Seconds a claim on work (a download, a fallback poll) lasts unless its worker renews it (every
    # third of it): how long the work of a replica that died waits before another takes it over.
    claim_lease: float = 60.0
    download_max_attempts: int = 12
    download_retry_initial: float = 2.0
    download_retry_cap: float = 300.0
    min_free_bytes: int = 256 * 1024 * 1024
    download_min_rate: float = 64 * 1024
    download_deadline_base: float = 60.0
    download_rate_grace: float = 30.0
    allow_private_urls: bool = False
    # POST /jobs asks upstream whether the job exists (404 there: refused; unreachable: tracked anyway).
    verify_registrations: bool = True
    # Retention (days; None keeps forever): video files, job records, stored deliveries.
    retention_days: float | None = None
    record_retention_days: float | None = None
    delivery_retention_days: float | None = None
    sweep_interval: float = 3600.0
    # Spending caps on submits through the receiver (USD per UTC calendar day / month; None: none),
    # and what a job whose cost cannot be estimated does under a cap ("refuse" or "allow").
    budget_usd_per_day: float | None = None
    budget_usd_per_month: float | None = None
    budget_unknown_cost: str = "refuse"
    # Signed notifications to apps (receiver/settings_notify.py says what each is).
    notify_url: str | None = None
    notify_secret: Secret | None = None
    notify_allow_private: bool = False
    notify_schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    notify_timeout: float = 15.0
    log_format: str = "auto"
    log_level: str = "info"

    @property
    def db_path(self) -> str:
        return os.path.join(self.data_dir, "receiver.db")

    @property
    def videos_dir(self) -> str:
        return os.path.join(self.data_dir, "videos")

    @property
    def callback_url(self) -> str | None:
        return f"{self.public_url.rstrip('/')}{WEBHOOK_PATH}" if self.public_url else None

    @property
    def budget_caps(self) -> tuple[tuple[Literal["day", "month"], float], ...]:
        """The spending caps set, as (period, USD): receiver-wide (per-token caps come with tokens)."""
        caps: tuple[tuple[Literal["day", "month"], float | None], ...] = (
            ("day", self.budget_usd_per_day),
            ("month", self.budget_usd_per_month),
        )
        return tuple((period, usd) for period, usd in caps if usd is not None)

    def secret_values(self) -> list[str]:
        return [s.reveal() for s in self.webhook_secrets]

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from `environ` (default os.environ); raise SettingsError naming the bad one."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}

        def text(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value and value.strip() else None

        key = text("OPENROUTER_API_KEY")
        if key is None and "api_key" not in overrides:
            raise SettingsError(
                "OPENROUTER_API_KEY is not set: the receiver needs it to poll and download videos"
            )
        values["api_key"] = Secret(key or "")
        raw_secrets = text("OPENROUTER_WEBHOOK_SECRET")
        if raw_secrets is None and "webhook_secrets" not in overrides:
            raise SettingsError(
                "OPENROUTER_WEBHOOK_SECRET is not set: set it to the signing secret from OpenRouter's workspace "
                "settings (several, comma-separated, while rotating)"
            )
        if raw_secrets is not None:
            parts = [p.strip() for p in raw_secrets.split(",")]
            if not all(parts):
                raise SettingsError("OPENROUTER_WEBHOOK_SECRET has an empty entry (check the commas)")
            values["webhook_secrets"] = tuple(Secret(p) for p in parts)
        if (base := text("OPENROUTER_BASE_URL")) is not None:
            values["base_url"] = base
        if (data_dir := text("RECEIVER_DATA_DIR")) is not None:
            values["data_dir"] = data_dir
        if (database := text("RECEIVER_DATABASE_URL")) is not None:
            values["database_url"] = database
        if (content := text("RECEIVER_CONTENT_URL")) is not None:
            values["content_url"] = content
        if (token := text("RECEIVER_API_TOKEN")) is not None:
            if len(token) < 16:
                raise SettingsError(
                    "RECEIVER_API_TOKEN is shorter than 16 characters; use a long random token"
                )
            values["api_token"] = Secret(token)
        if (public := text("RECEIVER_PUBLIC_URL")) is not None:
            values["public_url"] = public
        for name, attr, kind in _NUMERIC:
            raw = text(name)
            if raw is None:
                continue
            try:
                number = kind(raw)
                if not math.isfinite(number):  # nan would pass every comparison below
                    raise ValueError(raw)
            except ValueError:
                raise SettingsError(
                    f"{name}={raw!r} is not {'a whole number' if kind is int else 'a number'}"
                ) from None
            if number < 0 or (number == 0 and attr in _POSITIVE):
                raise SettingsError(f"{name}={raw!r} must be {'> 0' if attr in _POSITIVE else '>= 0'}")
            values[attr] = number
        if (allow := text("RECEIVER_ALLOW_PRIVATE_URLS")) is not None:
            if allow.lower() not in _BOOLEAN:
                raise SettingsError(f"RECEIVER_ALLOW_PRIVATE_URLS={allow!r}: use 1 or 0")
            values["allow_private_urls"] = _BOOLEAN[allow.lower()]
        if (verify := text("RECEIVER_VERIFY_REGISTRATIONS")) is not None:
            if verify.lower() not in _BOOLEAN:
                raise SettingsError(f"RECEIVER_VERIFY_REGISTRATIONS={verify!r}: use 1 or 0")
            values["verify_registrations"] = _BOOLEAN[verify.lower()]
        if (unknown := text("RECEIVER_BUDGET_UNKNOWN_COST")) is not None:
            values["budget_unknown_cost"] = unknown.lower()
        from .settings_notify import read_notify_env

        values.update(read_notify_env(text))
        if (fmt := text("RECEIVER_LOG_FORMAT")) is not None:
            values["log_format"] = fmt
        if (level := text("RECEIVER_LOG_LEVEL")) is not None:
            values["log_level"] = level
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"OPENROUTER_BASE_URL={self.base_url!r} is not an http(s) URL")
        if self.public_url is not None:
            public = urlsplit(self.public_url)
            if public.scheme not in ("http", "https") or not public.hostname:
                raise SettingsError(f"RECEIVER_PUBLIC_URL={self.public_url!r} is not an http(s) URL")
        if self.database_url is not None:
            database = urlsplit(self.database_url)
            if database.scheme not in ("postgresql", "postgres") or not (database.hostname or database.path):
                # Only the scheme is shown: the URL may hold a password.
                raise SettingsError(
                    f"RECEIVER_DATABASE_URL must be postgresql://user:password@host:port/dbname "
                    f"(got a {database.scheme or 'schemeless'} URL); unset it for SQLite in the data dir"
                )
        if self.content_url is not None:
            content = urlsplit(self.content_url)
            if content.scheme != "s3" or not content.netloc:
                raise SettingsError(
                    f"RECEIVER_CONTENT_URL={self.content_url[:100]!r} must be s3://bucket/prefix; "
                    "unset it for the videos folder in the data dir"
                )
        if self.log_format not in ("auto", "json", "console"):
            raise SettingsError(f"RECEIVER_LOG_FORMAT={self.log_format!r}: use auto, json or console")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise SettingsError(f"RECEIVER_LOG_LEVEL={self.log_level!r}: use debug, info, warning or error")
        if self.budget_unknown_cost not in ("refuse", "allow"):
            raise SettingsError(
                f"RECEIVER_BUDGET_UNKNOWN_COST={self.budget_unknown_cost!r}: use refuse or allow"
            )
        if not self.webhook_secrets or not all(self.webhook_secrets):
            raise SettingsError("OPENROUTER_WEBHOOK_SECRET is empty")
        from .settings_notify import check_notify

        check_notify(self)

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"Settings({shown})"


_NUMERIC: tuple[tuple[str, str, type], ...] = (
    ("RECEIVER_WEBHOOK_TOLERANCE", "webhook_tolerance", int),
    ("RECEIVER_MAX_BODY_BYTES", "max_body_bytes", int),
    ("RECEIVER_MAX_HEADER_BYTES", "max_header_bytes", int),
    ("RECEIVER_MAX_HEADERS", "max_headers", int),
    ("RECEIVER_HEADER_TIMEOUT", "header_timeout", float),
    ("RECEIVER_BODY_TIMEOUT", "body_timeout", float),
    ("RECEIVER_FALLBACK_AFTER", "fallback_after", float),
    ("RECEIVER_FALLBACK_MAX_AGE", "fallback_max_age", float),
    ("RECEIVER_POLL_FIRST_INTERVAL", "poll_first_interval", float),
    ("RECEIVER_POLL_MAX_INTERVAL", "poll_max_interval", float),
    ("RECEIVER_DOWNLOAD_CONCURRENCY", "download_concurrency", int),
    ("RECEIVER_CLAIM_LEASE", "claim_lease", float),
    ("RECEIVER_DOWNLOAD_MAX_ATTEMPTS", "download_max_attempts", int),
    ("RECEIVER_DOWNLOAD_RETRY_INITIAL", "download_retry_initial", float),
    ("RECEIVER_DOWNLOAD_RETRY_CAP", "download_retry_cap", float),
    ("RECEIVER_MIN_FREE_BYTES", "min_free_bytes", int),
    ("RECEIVER_DOWNLOAD_MIN_RATE", "download_min_rate", float),
    ("RECEIVER_DOWNLOAD_DEADLINE_BASE", "download_deadline_base", float),
    ("RECEIVER_DOWNLOAD_RATE_GRACE", "download_rate_grace", float),
    ("RECEIVER_RETENTION_DAYS", "retention_days", float),
    ("RECEIVER_RECORD_RETENTION_DAYS", "record_retention_days", float),
    ("RECEIVER_DELIVERY_RETENTION_DAYS", "delivery_retention_days", float),
    ("RECEIVER_SWEEP_INTERVAL", "sweep_interval", float),
    ("RECEIVER_BUDGET_USD_PER_DAY", "budget_usd_per_day", float),
    ("RECEIVER_BUDGET_USD_PER_MONTH", "budget_usd_per_month", float),
)
_BOOLEAN = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}
_POSITIVE = {
    "max_body_bytes",
    "max_header_bytes",
    "max_headers",
    "header_timeout",
    "body_timeout",
    "download_concurrency",
    "claim_lease",
    "download_max_attempts",
    "poll_first_interval",
    "poll_max_interval",
    "webhook_tolerance",
    "retention_days",
    "record_retention_days",
    "delivery_retention_days",
    "sweep_interval",
}
