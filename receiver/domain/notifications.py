"""Signed notifications to apps: when a job's end is told, where, and how a failed send is retried.

Pure decisions shared by both backends. A backend calls `plan_notification` in the transaction of
every change that may end a job for an app (a webhook or poll applied, an output stored or given
up, a job registered or tied to its submission) and inserts what it returns into its outbox with
`ON CONFLICT (job_id, event) DO NOTHING`: exactly one notification per job end, however often the
change is replayed (a reprocessed delivery, a second poll).

When:
- failed, cancelled, expired (any terminal status but completed): at once;
- completed: once every output is final (`done`, or given up as `gone`/`failed`, or `deleted`).
  An output given up for good does not hold the notification back forever: the app is told the job
  completed, and each output's state (and content URL, for the done ones) is in the payload. An
  output retried by an operator later does not notify again (the job's end was told once).

Retries (`next_attempt`): like Svix's schedule, immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
10 h (about 27.6 h in all), each delay with +-10 % jitter so that many apps failing at once do not
come back in lockstep; after the last attempt the notification is `dead` until replayed by hand.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from openrouter_video import COMPLETED, TERMINAL_STATUSES

NotificationState = Literal["pending", "delivered", "dead"]
NOTIFICATION_STATES: tuple[NotificationState, ...] = ("pending", "delivered", "dead")
FINAL_OUTPUT_STATES = frozenset({"done", "failed", "gone", "deleted"})

# Seconds before attempt 1, 2, ... (Svix's schedule): attempt k+1 comes schedule[k] after attempt k.
DEFAULT_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.1  # a delay is stretched or shrunk by up to this share
NOTIFICATION_ID_PREFIX = "msg_"


def new_notification_id() -> str:
    """The notification's `webhook-id`: stable across its retries, so the app can deduplicate."""
    return f"{NOTIFICATION_ID_PREFIX}{secrets.token_hex(12)}"


def event_type(status: str) -> str:
    """`video.completed`, `video.failed`, `video.cancelled`, `video.expired` (as the job's status says)."""
    return f"video.{status}"


@dataclass(frozen=True, slots=True)
class JobEnd:
    """What the decision reads of a job, in the transaction that changed it."""

    job_id: str
    status: str
    notify_url: str | None
    output_states: Collection[str] = ()
    owner: str | None = None  # the token that submitted the job (once jobs have owners)


@dataclass(frozen=True, slots=True)
class NewNotification:
    """An outbox row to insert (unless the job's end was already told)."""

    id: str
    job_id: str
    event: str
    url: str
    owner: str | None
    created_at: float  # also its first attempt's due time: at once


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    id: str
    job_id: str
    event: str
    url: str
    owner: str | None
    state: NotificationState
    attempts: int
    next_attempt_at: float
    last_status: int | None
    last_error: str | None
    created_at: float
    delivered_at: float | None


def plan_notification(
    job: JobEnd | None, *, default_url: str | None, now: float, new_id: str | None = None
) -> NewNotification | None:
    """The notification this job's current state calls for (None: none, or not yet)."""
    if job is None or job.status not in TERMINAL_STATUSES:
        return None
    url = job.notify_url or default_url
    if not url:
        return None
    if job.status == COMPLETED and not all(state in FINAL_OUTPUT_STATES for state in job.output_states):
        return None  # told once every output is stored (or given up)
    return NewNotification(
        id=new_id or new_notification_id(),
        job_id=job.job_id,
        event=event_type(job.status),
        url=url,
        owner=job.owner,
        created_at=now,
    )


def next_attempt(attempts: int, schedule: tuple[float, ...], rand: float) -> float | None:
    """After `attempts` attempts (the last one failed): seconds until the next one, None: no more
    (dead). `rand` in [0, 1) picks the jitter."""
    if attempts >= len(schedule):
        return None
    delay = schedule[attempts]
    return max(0.0, delay * (1 + JITTER * (2 * rand - 1)))


def parse_schedule(text: str) -> tuple[float, ...]:
    """`RECEIVER_NOTIFY_SCHEDULE`: comma-separated seconds before each attempt, e.g. `0,5,300`;
    ValueError with the rule."""
    try:
        delays = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"{text!r} is not comma-separated seconds (e.g. 0,5,300)") from None
    if not delays or any(not 0 <= d < 10 * 86400 for d in delays):
        raise ValueError(f"{text!r}: each delay must be from 0 to 10 days, in seconds")
    return delays
