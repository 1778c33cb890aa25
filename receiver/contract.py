"""The receiver's HTTP contract: every request and response shape, declared once as msgspec types.

The handlers validate input with them (`parse`) and shape output with them (`encode`); the OpenAPI
document at `/openapi.json` is generated from them (`receiver.openapi`). Why msgspec: it validates
and encodes in C (a job listing of 500 records encodes in well under a millisecond), its types are
plain annotated classes, and it emits JSON Schema for exactly those types. The webhook hot path
keeps its precomputed answers, encoded once from `DeliveryAnswer` at import.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from openrouter_video import ALL_STATUSES, JOB_ID_PATTERN
from openrouter_video._types import FRAME_TYPES

from .domain.model import DeliveryRecord, JobRecord, SubmissionRecord
from .domain.pages import DELIVERY_STATES, DOWNLOAD_STATES
from .domain.submissions import SUBMISSION_ID_PATTERN, SUBMISSION_STATES

# OpenRouter documents no prompt limit; 10,000 characters is far above any real prompt, and a record is
# returned in every listing, so one huge prompt must not make every listing huge.
MAX_PROMPT_CHARS = 10_000
MAX_MODEL_CHARS = 200
MAX_LIMIT = 500
MAX_INDEX = 2**63 - 1  # SQLite's INTEGER range: no output index beyond it can exist
TIME_FIELDS = (
    "created_at",
    "submitted_at",
    "first_seen_at",
    "updated_at",
    "terminal_at",
    "at",
    "received_at",
    "applied_at",
)

JobId = Annotated[str, msgspec.Meta(pattern=JOB_ID_PATTERN, description="letters, digits, '-' and '_'")]
Time = Annotated[str, msgspec.Meta(description="ISO 8601, UTC", extra_json_schema={"format": "date-time"})]
Sha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
OutputState = Literal[DOWNLOAD_STATES]  # type: ignore[valid-type]
Status = Annotated[
    str, msgspec.Meta(description=f"one of {', '.join(ALL_STATUSES)} (or a newer upstream one)")
]


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    code: int
    message: str
    reason: str | None = None  # why a webhook was not verified
    field: str | None = None  # a submit's field the model's catalog entry (or the API) rules out
    allowed: list[Any] | None = None  # what that field allows
    submission: Submission | None = None  # a refused submit: the submission, as GET /submissions shows


class ErrorEnvelope(msgspec.Struct):
    """Every refusal: built by `receiver.errors`."""

    error: ErrorDetail


class Output(msgspec.Struct):
    index: Annotated[int, msgspec.Meta(ge=0)]
    state: OutputState
    attempts: Annotated[int, msgspec.Meta(ge=0)]
    bytes: Annotated[int, msgspec.Meta(ge=0)] | None
    sha256: Sha256 | None
    error: str | None
    updated_at: Time
    url: str | None  # the content URL, once the output is done


class Event(msgspec.Struct):
    at: Time
    source: str
    kind: str
    status: str | None
    detail: str | None


class JobSummary(msgspec.Struct, kw_only=True):
    id: JobId
    model: str | None
    prompt: str | None
    status: Status
    created_at: Time
    submitted_at: Time | None
    first_seen_at: Time
    updated_at: Time
    terminal_at: Time | None
    source: Annotated[str, msgspec.Meta(description="what last moved the record: webhook, poll or submit")]
    registered: bool
    error: str | None
    cost: float | None
    generation_id: str | None
    owner: Annotated[
        str | None,
        msgspec.Meta(
            description="the named API token that submitted or registered the job; null: the admin "
            "token's, or a job known by webhook only"
        ),
    ] = None


class Job(JobSummary, kw_only=True):
    outputs: list[Output]
    events: list[Event]


class JobList(msgspec.Struct):
    jobs: list[JobSummary]
    next_cursor: str | None


NotifyUrl = Annotated[
    str,
    msgspec.Meta(
        max_length=2048,
        description="Where the receiver POSTs a signed notification (Standard Webhooks) when the job "
        "ends (a completed job: once its outputs are stored); an absolute http(s) URL on a public "
        "address (unless RECEIVER_NOTIFY_ALLOW_PRIVATE). A receiver field: never sent upstream.",
    ),
]


class Registration(msgspec.Struct, forbid_unknown_fields=False):
    """`POST /jobs`: track a job submitted elsewhere."""

    id: JobId
    model: Annotated[str, msgspec.Meta(max_length=MAX_MODEL_CHARS)] | None = None
    prompt: Annotated[str, msgspec.Meta(max_length=MAX_PROMPT_CHARS)] | None = None
    notify_url: NotifyUrl | None = None


class ImageUrl(msgspec.Struct, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(description="https:// or data: URL (the receiver reads no files)")]


class FrameImage(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    image_url: ImageUrl
    frame_type: Literal[FRAME_TYPES]  # type: ignore[valid-type]
    type: Literal["image_url"] = "image_url"


class InputReference(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    type: Literal["image_url", "audio_url", "video_url"]
    image_url: ImageUrl | None = None
    audio_url: ImageUrl | None = None
    video_url: ImageUrl | None = None


class ProviderPreferences(msgspec.Struct, forbid_unknown_fields=True):
    options: dict[str, dict[str, Any]]


class SubmitRequest(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`POST /jobs` with an `Idempotency-Key` header: submit a job through the receiver. The body is
    OpenRouter's `POST /videos` body (what `openrouter-video submit` sends) without `callback_url`:
    the receiver sets that to its own webhook URL. Checked against the model's catalog entry before
    anything is paid."""

    model: Annotated[str, msgspec.Meta(max_length=MAX_MODEL_CHARS)]
    prompt: Annotated[str, msgspec.Meta(max_length=MAX_PROMPT_CHARS)] | None = None
    duration: Annotated[int, msgspec.Meta(ge=1)] | None = None
    resolution: str | None = None
    aspect_ratio: str | None = None
    size: str | None = None
    seed: int | None = None
    generate_audio: bool | None = None
    frame_images: list[FrameImage] | None = None
    input_references: list[InputReference] | None = None
    provider: ProviderPreferences | None = None
    upscale_factor: float | None = None
    creativity: int | None = None
    previous_job_id: JobId | None = None
    session_id: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    trace: dict[str, Any] | None = None
    user: str | None = None
    notify_url: NotifyUrl | None = None


class Submission(msgspec.Struct, kw_only=True):
    """A submit made through the receiver (`GET /submissions/{id or key}`): `submitting` (recorded,
    upstream not answered yet), `submitted` (`job_id` known; `job` is its record), `refused` (upstream
    said no: `upstream_status`, `error`; final for this key), or `outcome_unknown` (no clear answer;
    never resubmitted: the job's webhook ties it back, naming this submission in its callback URL)."""

    id: Annotated[str, msgspec.Meta(pattern=SUBMISSION_ID_PATTERN)]
    idempotency_key: str
    state: Literal[SUBMISSION_STATES]  # type: ignore[valid-type]
    model: str
    prompt: str | None
    job_id: JobId | None
    upstream_status: int | None
    error: str | None
    created_at: Time
    updated_at: Time
    estimated_cost: float | None = None  # USD, from the model's pricing when submitted (None: unknown)
    owner: str | None = None  # the named token that submitted it (None: the admin token)
    notify_url: str | None = None  # where the job's end is told (None: the receiver's default, if any)
    job: Job | None = None


class UsageRow(msgspec.Struct):
    """Spend of one UTC day, model and token: `estimated_usd` sums the submissions' estimates,
    `actual_usd` the real costs known (`usage.cost`), `counted_usd` what the caps count (a running
    job at its estimate, an ended one at its real cost)."""

    day: Annotated[str, msgspec.Meta(pattern="^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    model: str | None
    token: str | None  # who spent: a token's name ("admin": RECEIVER_API_TOKEN); null: a webhook-only job
    jobs: int
    estimated_usd: float
    actual_usd: float
    counted_usd: float


class CapUsage(msgspec.Struct):
    """A spending cap over its current UTC period: what it counts as spent, and what remains."""

    period: Literal["day", "month"]
    cap_usd: float
    token: str | None  # null: receiver-wide; else the named token the cap is for
    start: Time
    end: Time
    spent_usd: float
    remaining_usd: float


class Usage(msgspec.Struct):
    """`GET /usage`: spend by day, model and token over [since, until), and the caps."""

    since: Time
    until: Time | None
    rows: list[UsageRow]
    estimated_usd: float
    actual_usd: float
    counted_usd: float
    caps: list[CapUsage]
    unknown_cost: Literal["refuse", "allow"]  # what a job whose cost cannot be estimated does under a cap


class WebhookUsage(msgspec.Struct):
    cost: float | None = None
    is_byok: bool | None = None


class WebhookJob(msgspec.Struct):
    id: JobId
    status: Literal[ALL_STATUSES]  # type: ignore[valid-type]
    model: str | None = None
    generation_id: str | None = None
    error: str | None = None
    unsigned_urls: list[str] = []
    usage: WebhookUsage | None = None


class WebhookEvent(msgspec.Struct):
    """OpenRouter's `video.generation.<status>` event. Any verified body is stored and acknowledged; it
    is applied to its job right after, and one that is not such an event is kept as unprocessed
    (see `openrouter-video deliveries --unprocessed`)."""

    type: Annotated[str, msgspec.Meta(examples=["video.generation.completed"])]
    data: WebhookJob
    created_at: str | None = None


class DeliveryAnswer(msgspec.Struct):
    received: Literal[True]
    outcome: Literal["accepted", "duplicate", "test"]  # test: a `webhook test` delivery (no job made)


class Deleted(msgspec.Struct):
    """`DELETE /jobs/{id}`: what was removed."""

    deleted: JobId
    files: Annotated[int, msgspec.Meta(ge=0)]
    freed_bytes: Annotated[int, msgspec.Meta(ge=0)]


class StoredDelivery(msgspec.Struct):
    """A stored webhook delivery as listed: never its body, nor its headers (the signature is one)."""

    id: Annotated[int, msgspec.Meta(ge=1)]
    idempotency_key: str
    job_id: str | None
    event_type: str | None
    status: str | None
    received_at: Time
    remote_addr: str | None
    state: Literal[DELIVERY_STATES]  # type: ignore[valid-type]
    error: str | None
    applied_at: Time | None
    body_bytes: Annotated[int, msgspec.Meta(ge=0)]


class DeliveryList(msgspec.Struct):
    deliveries: list[StoredDelivery]
    next_cursor: str | None


class Reprocess(msgspec.Struct):
    """`POST /deliveries/reprocess`: which deliveries to apply again (none given: every one not applied)."""

    ids: (
        Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=MAX_INDEX)]], msgspec.Meta(max_length=10_000)]
        | None
    ) = None


class Reprocessed(msgspec.Struct):
    id: Annotated[int, msgspec.Meta(ge=1)]
    idempotency_key: str
    job_id: str | None
    status: str | None
    applied: bool
    error: str | None


class ReprocessResult(msgspec.Struct):
    reprocessed: list[Reprocessed]
    applied: Annotated[int, msgspec.Meta(ge=0)]
    unprocessed: Annotated[int, msgspec.Meta(ge=0)]


class OutputChange(msgspec.Struct):
    index: Annotated[int, msgspec.Meta(ge=0)]
    state: OutputState
    url: str | None  # the content URL, once the output is done


class JobChange(msgspec.Struct, kw_only=True):
    """`GET /events`, event `job`: where a job stands after a change (its status, its outputs' states)."""

    id: JobId
    status: Status
    updated_at: Time
    terminal_at: Time | None
    error: str | None
    outputs: list[OutputChange]


class EventsReset(msgspec.Struct):
    """`GET /events`, event `reset`: the cursor it resumed from cannot be followed (why); changes may
    have been missed: read again the jobs you follow. The stream goes on from now."""

    reason: str


class Health(msgspec.Struct):
    status: Literal["ok"]


class Readiness(msgspec.Struct):
    status: Literal["ready", "not ready"]
    problems: list[str]
    free_bytes: Annotated[int, msgspec.Meta(ge=0)]


# -- using the types ------------------------------------------------------------------------------

T = TypeVar("T")
_encoder = msgspec.json.Encoder()
_AT = re.compile(r" - at `\$\.?([^`]*)`$")


class ContractError(ValueError):
    """Input that does not fit its declared type; the message names the field and the rule."""


def parse(data: Any, shape: type[T]) -> T:
    """`data` (decoded JSON) as `shape`, or ContractError with one line: `field: what is wrong`."""
    try:
        return msgspec.convert(data, shape)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _AT.search(text)
        if match is None:
            raise ContractError(text) from None
        raise ContractError(f"{match.group(1) or 'body'}: {text[: match.start()]}") from None


def iso(ts: float | None) -> str | None:
    """How every time is shown, to people and programs alike: ISO 8601 in UTC, to the millisecond."""
    if ts is None:
        return None
    return (
        datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def present_job(job: JobRecord) -> dict[str, Any]:
    """A stored job record as it is shown: ISO 8601 times, and each done output's content URL (never
    its content key: where the content store keeps it is the store's business)."""
    record = {
        f.name: getattr(job, f.name) for f in dataclasses.fields(job) if f.name not in ("outputs", "events")
    }
    for name in TIME_FIELDS:
        if name in record:
            record[name] = iso(record[name])
    record["outputs"] = [
        {
            "index": o.index,
            "state": o.state,
            "attempts": o.attempts,
            "bytes": o.bytes,
            "sha256": o.sha256,
            "error": o.error,
            "updated_at": iso(o.updated_at),
            "url": f"/jobs/{job.id}/content?index={o.index}" if o.state == "done" else None,
        }
        for o in job.outputs
    ]
    record["events"] = [{**dataclasses.asdict(e), "at": iso(e.at)} for e in job.events]
    return record


def present_change(job: JobRecord) -> JobChange:
    """A job as `GET /events` tells a change of it."""
    return JobChange(
        id=job.id,
        status=job.status,
        updated_at=iso(job.updated_at) or "",
        terminal_at=iso(job.terminal_at),
        error=job.error,
        outputs=[
            OutputChange(
                o.index, o.state, f"/jobs/{job.id}/content?index={o.index}" if o.state == "done" else None
            )
            for o in job.outputs
        ],
    )


def present_summary(job: JobRecord) -> dict[str, Any]:
    """A job as listed: the record without its outputs and events."""
    record = present_job(job)
    del record["outputs"], record["events"]
    return record


def present_submission(submission: SubmissionRecord, job: JobRecord | None) -> dict[str, Any]:
    """A submission as it is shown: ISO 8601 times, and its job's record once there is one."""
    row = dataclasses.asdict(submission)
    del row["fingerprint"]  # a hash of the request: the store's business, not the caller's
    row["created_at"], row["updated_at"] = iso(submission.created_at), iso(submission.updated_at)
    row["job"] = present_job(job) if job is not None else None
    return row


def present_delivery(delivery: DeliveryRecord) -> dict[str, Any]:
    """A stored delivery as it is shown: ISO 8601 times."""
    row = dataclasses.asdict(delivery)
    for name in ("received_at", "applied_at"):
        row[name] = iso(row[name])
    return row


def parse_time(name: str, value: str | None) -> float | None:
    """A time given by a person or a program: unix seconds, or ISO 8601 (UTC unless it says)."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} must be unix seconds or ISO-8601, got {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def shape(data: Any, kind: type[T]) -> T:
    """A record from the store (plain dicts) as its declared response type: the output is checked."""
    return msgspec.convert(data, kind)
