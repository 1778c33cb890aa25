"""The receiver's typed records: what the stores return and what the decisions take and give.

Plain frozen dataclasses, no I/O: every storage backend returns these (never rows or dicts) and the
HTTP edge shapes them into the typed contract (`receiver.contract`). Times are unix seconds (float);
the edge turns them into ISO 8601.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Decision = Literal["create", "advance", "same", "stale", "conflict"]
DeliveryState = Literal["pending", "applied", "failed", "test"]
OutputState = Literal["pending", "downloading", "done", "failed", "gone", "deleted"]


# -- what is stored and read back --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """A verified webhook delivery as received (raw body and relevant headers), before it is stored."""

    idempotency_key: str
    body: bytes
    headers: dict[str, str]
    received_at: float
    signed_at: int | None
    remote_addr: str | None = None
    replay_key: bytes | None = None  # hash of signed timestamp + body: the same signed request seen again
    selftest_job: str | None = None  # a `webhook test` delivery (its synthetic job id): stored as 'test'
    # The submission its callback URL named (`?submission=`): unsigned, it only links (see domain.submissions)
    submission_id: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedDelivery:
    """What storing a delivery did: kept it (pending, with its id) or found its key already stored."""

    duplicate: bool
    delivery_id: int | None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """A stored delivery as shown: never its body or its headers (the signature is one)."""

    id: int
    idempotency_key: str
    job_id: str | None
    event_type: str | None
    status: str | None
    received_at: float
    remote_addr: str | None
    state: DeliveryState
    error: str | None
    applied_at: float | None
    body_bytes: int


@dataclass(frozen=True, slots=True)
class OutputRecord:
    index: int
    state: OutputState
    attempts: int
    bytes: int | None
    sha256: str | None
    error: str | None
    updated_at: float
    content_key: str | None = None  # where the content store keeps it (done outputs); never a local path


@dataclass(frozen=True, slots=True)
class EventRecord:
    at: float
    source: str
    kind: str
    status: str | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    model: str | None
    prompt: str | None
    status: str
    created_at: float
    submitted_at: float | None
    first_seen_at: float
    updated_at: float
    terminal_at: float | None
    source: str
    registered: bool
    error: str | None
    cost: float | None
    generation_id: str | None
    outputs: tuple[OutputRecord, ...] = ()  # filled by `Jobs.get`, empty in listings
    events: tuple[EventRecord, ...] = ()  # filled by `Jobs.get`, empty in listings
    owner: str | None = None  # the token that submitted or registered it (None: admin's or webhook-only)


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What a listing of jobs may be narrowed by (all optional); newest first, keyset paginated."""

    status: str | None = None
    model: str | None = None
    since: float | None = None
    until: float | None = None
    owner: str | None = None  # a token's name: only its jobs (None: every job)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing and the cursor of the next (None: the last page)."""

    items: list[Any]
    cursor: str | None


# -- work claimed by a worker under a lease ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class DownloadClaim:
    """An output claimed for download: its job's upstream view (urls, for the client) comes along."""

    job_id: str
    index: int
    attempts: int  # attempts before this one
    upstream: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PollClaim:
    """A job claimed for one fallback poll; `PollQueue.schedule` records the outcome and frees it."""

    job_id: str
    submitted_at: float | None
    created_at: float
    poll_attempts: int


# -- what applying work did --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApplyResult:
    decision: Decision
    previous: str | None
    outputs_queued: int


@dataclass(frozen=True, slots=True)
class AppliedDelivery:
    """A stored delivery taken out of `pending`: applied to its job, or failed (kept, with the reason)."""

    delivery_id: int
    idempotency_key: str
    received_at: float
    job_id: str | None
    status: str | None
    decision: Decision | None
    error: str | None
    outputs_queued: int = 0

    @property
    def applied(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class AppliedBatch:
    deliveries: list[AppliedDelivery]
    seconds: float  # time spent applying them (not waiting for the commit): the applier paces itself by it


# -- the dashboard's reads (storage.base.Dashboard; receiver/ui/data.py is the one caller) -----

# A search examines at most this many jobs per page (newest first, within the other filters): a rare
# term costs one window, not a scan of every job; the page says how far back it searched.
SEARCH_WINDOW = 20_000
# The total cost of a filter is added up when at most this many jobs match it (one bounded read).
TOTAL_CAP = 20_000
# How many changed job ids one look at the change feed returns at most (more: "reload everything").
CHANGES_LIMIT = 200
CHANGES_READ = (
    CHANGES_LIMIT * 20
)  # job events one look at the change feed reads at most (a job's come in bursts)


@dataclass(frozen=True, slots=True)
class JobSearch:
    """What the dashboard's jobs page asks for: filters, a search text and where in the listing
    (newest first, keyset paginated both ways on (created_at, id))."""

    filters: JobFilter = JobFilter()
    text: str | None = None  # a prompt substring or a job id prefix, case-insensitive (ASCII at least)
    cursor: str | None = None
    newer: bool = False  # the `limit` jobs just newer than `cursor` (going back), else those older
    limit: int = 50
    window: int = SEARCH_WINDOW  # the most jobs one page of a search examines


@dataclass(frozen=True, slots=True)
class JobSearchPage:
    jobs: list[JobRecord]  # without outputs and events
    older: str | None  # cursor of the next (older) page
    newer: str | None  # cursor of the previous (newer) page; None on the first page
    searched_to: float | None  # a search stopped at this creation time (None: it saw every job)


@dataclass(frozen=True, slots=True)
class FilterTotal:
    jobs: int
    cost: float  # USD


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of a job's timeline: one of its events, or a webhook delivery stored for it."""

    at: float
    source: str
    kind: str  # an event's kind, or `delivery`
    status: str | None
    detail: str | None
    delivery_id: int | None = None


@dataclass(frozen=True, slots=True)
class JobPolling:
    """The fallback poller's view of a job: polls made and the next one (None: not polled any more)."""

    poll_attempts: int
    next_poll_at: float | None


@dataclass(frozen=True, slots=True)
class AttentionOutput:
    """An output whose download failed for good (`failed`, `gone`) or waits to be tried again."""

    job_id: str
    index: int
    state: OutputState
    attempts: int
    error: str | None
    updated_at: float
    next_attempt_at: float | None
    model: str | None


@dataclass(frozen=True, slots=True)
class ChangeToken:
    """Where a store's change feed stands, as `Dashboard.changes_since` last answered. Only the store
    that issued it reads it; equal tokens: nothing a page shows changed in between."""

    events: int  # the newest job event id seen
    deliveries: int  # the newest delivery id seen
    # PostgreSQL hands ids out in one order and commits them in another: ids below the newest that were
    # not yet committed when last looked, with when they were first missed (looked for a while longer).
    unseen_events: tuple[tuple[int, float], ...] = ()
    unseen_deliveries: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Changes:
    token: ChangeToken  # where the feed stands now: the next look starts here
    jobs: tuple[str, ...] = ()  # jobs with an event since the previous token (at most the look's limit)
    all: bool = False  # more changed than listed: whatever a page shows may have changed
    deliveries: bool = False  # a webhook delivery was stored since


# -- submissions made through the receiver (POST /jobs with an Idempotency-Key) ----------------

SubmissionState = Literal["submitting", "submitted", "outcome_unknown", "refused"]


@dataclass(frozen=True, slots=True)
class SubmissionRecord:
    """One paid submit asked of the receiver, under the caller's idempotency key.

    `fingerprint` identifies the request (the same key with another request is refused); `job_id` is
    known once upstream answered (or, after an ambiguous failure, once the job's webhook tied it
    back); `upstream_status` and `error` say why it was refused or why its outcome is unknown."""

    id: str
    idempotency_key: str
    fingerprint: str
    state: SubmissionState
    model: str
    prompt: str | None
    job_id: str | None
    upstream_status: int | None
    error: str | None
    created_at: float
    updated_at: float
    # The job's estimated cost when it was submitted (USD; None: not estimable), what a spending cap
    # counts until the job's real cost is known.
    estimated_cost: float | None = None
    # The token that asked (None: the built-in admin); its idempotency keys are its own namespace.
    owner: str | None = None
    # Where the job's end is told (a receiver field, never sent upstream); handed to the job.
    notify_url: str | None = None
