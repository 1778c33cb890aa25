"""What an upstream view of a job (webhook or poll), a registration or a poll outcome changes in a job.

Pure decisions, the same for every backend. A backend reads the job's current state (`JobState`,
the columns in `JOB_STATE_COLUMNS` plus the indexes of its output rows), calls a `plan_*` function
and stores the `JobChange` it returns with generic SQL, deciding nothing:

- `create`: the full new `jobs` row (column -> value), inserted; or
- `update`: column -> final value for the existing row (COALESCE and merge rules already applied);
- `events`: `job_events` rows to insert, in order;
- `queue_outputs`: output indexes to insert as `pending` if absent (next attempt `outputs_at`).

The `upstream` column's value is a dict; the backend stores it as JSON. Booleans are booleans.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openrouter_video import COMPLETED, PENDING, TERMINAL_STATUSES, VideoJob

from .events import storable_job
from .model import ApplyResult
from .states import decide

# A real job has a handful of outputs; a signed event announcing more is refused beyond this, so one
# delivery cannot queue hundreds of thousands of downloads.
MAX_OUTPUTS_PER_JOB = 16

# What a backend reads of a job row for `JobState` (the output indexes come from the outputs table).
JOB_STATE_COLUMNS = (
    "status",
    "registered",
    "upstream",
    "error",
    "cost",
    "generation_id",
    "model",
    "prompt",
    "submitted_at",
    "terminal_at",
    "next_poll_at",
    "poll_attempts",
    "owner",
    "notify_url",
)


@dataclass(frozen=True, slots=True)
class JobState:
    """The slice of a stored job that the decisions need."""

    status: str
    registered: bool = False
    upstream: Mapping[str, Any] | None = None
    error: str | None = None
    cost: float | None = None
    generation_id: str | None = None
    model: str | None = None
    prompt: str | None = None
    submitted_at: float | None = None
    terminal_at: float | None = None
    next_poll_at: float | None = None
    poll_attempts: int = 0
    owner: str | None = None
    notify_url: str | None = None  # where the job's end is told (None: the receiver's default, if any)
    outputs: frozenset[int] = frozenset()  # indexes of the job's output rows, whatever their state


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A `job_events` row to insert for the change's job."""

    at: float
    source: str
    kind: str
    status: str | None = None
    detail: str | None = None
    delivery_id: int | None = None


@dataclass(frozen=True, slots=True)
class JobChange:
    """What to store for one job; see the module's docstring. An empty change stores nothing."""

    job_id: str
    create: dict[str, Any] | None = None
    update: dict[str, Any] = field(default_factory=dict)
    events: tuple[NewEvent, ...] = ()
    queue_outputs: tuple[int, ...] = ()
    outputs_at: float = 0.0  # the queued outputs' first attempt (and updated_at)
    result: ApplyResult | None = None  # for an upstream view of the job (webhook or poll)

    @property
    def created(self) -> bool:
        return self.create is not None

    @property
    def stops_polling(self) -> bool:
        return "next_poll_at" in self.update and self.update["next_poll_at"] is None

    @property
    def empty(self) -> bool:
        return self.create is None and not self.update and not self.events and not self.queue_outputs


def _changed(current: JobState, values: dict[str, Any]) -> dict[str, Any]:
    """Only the columns whose final value differs from what is stored."""
    return {name: value for name, value in values.items() if getattr(current, name, object()) != value}


def _first(*values: Any) -> Any:
    """SQL's COALESCE: the first value that is not None."""
    return next((v for v in values if v is not None), None)


def plan_job_update(
    current: JobState | None, job: VideoJob, *, source: str, now: float, delivery_id: int | None = None
) -> JobChange:
    """Move the job forward by an upstream view of it (a webhook event's job, or a poll answer).

    Status only moves forward (`receiver.domain.states`); an advance takes upstream's error, cost and
    generation id, `same` only fills what is missing; a terminal status stops the fallback polls; a
    completed job queues its outputs (at most MAX_OUTPUTS_PER_JOB, the rest refused with an event).
    """
    job = storable_job(job)
    previous = current.status if current is not None else None
    decision = decide(previous, job.status)
    terminal_at = now if job.status in TERMINAL_STATUSES else None
    cost = job.usage.cost if job.usage else None
    create: dict[str, Any] | None = None
    update: dict[str, Any] = {}
    if current is None:
        create = {
            "id": job.id,
            "model": job.model,
            "status": job.status,
            "created_at": now,
            "first_seen_at": now,
            "updated_at": now,
            "terminal_at": terminal_at,
            "source": source,
            "error": job.error,
            "cost": cost,
            "generation_id": job.generation_id,
            "upstream": dict(job.raw),
        }
    elif decision in ("advance", "same"):
        merged = dict(current.upstream or {})
        merged.update({k: v for k, v in job.raw.items() if v is not None})
        if decision == "advance":
            values: dict[str, Any] = {
                "status": job.status,
                "updated_at": now,
                "source": source,
                "terminal_at": _first(current.terminal_at, terminal_at),
                "error": _first(job.error, current.error),
                "cost": _first(cost, current.cost),
                "generation_id": _first(job.generation_id, current.generation_id),
                "model": _first(current.model, job.model),
                "upstream": merged,
            }
            if terminal_at is not None:
                values["next_poll_at"] = None
        else:
            values = {
                "error": _first(current.error, job.error),
                "cost": _first(current.cost, cost),
                "generation_id": _first(current.generation_id, job.generation_id),
                "model": _first(current.model, job.model),
                "upstream": merged,
            }
        update = _changed(current, values)
    events: list[NewEvent] = []
    if decision != "same":
        kind = "status" if decision in ("create", "advance") else decision
        detail = job.error if decision in ("create", "advance") else f"current status is {previous}"
        events.append(NewEvent(now, source, kind, job.status, detail, delivery_id))
    queue: tuple[int, ...] = ()
    if job.status == COMPLETED and decision in ("create", "advance", "same"):
        announced = job.output_count
        known = current.outputs if current is not None else frozenset()
        queue = tuple(i for i in range(min(announced, MAX_OUTPUTS_PER_JOB)) if i not in known)
        if announced > MAX_OUTPUTS_PER_JOB and queue:
            detail = (
                f"{announced} outputs announced; only the first {MAX_OUTPUTS_PER_JOB} are downloaded, "
                f"the other {announced - MAX_OUTPUTS_PER_JOB} refused"
            )
            events.append(NewEvent(now, source, "outputs_refused", None, detail, delivery_id))
    return JobChange(
        job.id,
        create=create,
        update=update,
        events=tuple(events),
        queue_outputs=queue,
        outputs_at=now,
        result=ApplyResult(decision, previous, len(queue)),
    )


def plan_registration(
    current: JobState | None,
    job_id: str,
    *,
    model: str | None,
    prompt: str | None,
    now: float,
    first_poll_at: float,
    owner: str | None = None,
    notify_url: str | None = None,
) -> JobChange:
    """Track a submitted job: idempotent, and right whether its webhook came first or not.

    A job first seen by a webhook gets its model, prompt and submit time filled in and its first
    fallback poll scheduled, unless it is already terminal (nothing left to poll for). It takes
    `owner` (the token that submitted or registered it) if it has none: an owner is never changed.
    A `notify_url` given replaces the one stored (the latest registration says where to tell).
    """
    if current is None:
        row = {
            "id": job_id,
            "model": model,
            "prompt": prompt,
            "status": PENDING,
            "created_at": now,
            "submitted_at": now,
            "first_seen_at": now,
            "updated_at": now,
            "source": "submit",
            "registered": True,
            "next_poll_at": first_poll_at,
            "owner": owner,
        }
        if notify_url is not None:
            row["notify_url"] = notify_url
        return JobChange(job_id, create=row, events=(NewEvent(now, "submit", "registered", PENDING),))
    schedule = current.status not in TERMINAL_STATUSES and not current.registered
    values = {
        "model": _first(current.model, model),
        "prompt": _first(current.prompt, prompt),
        "submitted_at": _first(current.submitted_at, now),
        "registered": True,
        "next_poll_at": first_poll_at if schedule else current.next_poll_at,
        "owner": _first(current.owner, owner),
        "notify_url": _first(notify_url, current.notify_url),
    }
    events = () if current.registered else (NewEvent(now, "submit", "registered"),)
    return JobChange(job_id, update=_changed(current, values), events=events)


def plan_poll_schedule(
    current: JobState | None, job_id: str, next_at: float | None, *, attempted: bool = True
) -> JobChange:
    """The next fallback poll (None: no more); a terminal job is never polled again."""
    if current is None:
        return JobChange(job_id)
    values = {
        "next_poll_at": None if current.status in TERMINAL_STATUSES else next_at,
        "poll_attempts": current.poll_attempts + (1 if attempted else 0),
    }
    return JobChange(job_id, update=_changed(current, values))


def plan_not_found_upstream(current: JobState | None, job_id: str, *, detail: str, now: float) -> JobChange:
    """The fallback's end for a job upstream does not know: no more polls, an event, and the record's
    error says why. The status stays what it was (no upstream status was ever seen to move it)."""
    if current is None:
        return JobChange(job_id)
    values = {"next_poll_at": None, "error": _first(current.error, detail), "updated_at": now}
    return JobChange(
        job_id,
        update=_changed(current, values),
        events=(NewEvent(now, "poll", "not_found_upstream", None, detail),),
    )


def plan_note(job_id: str, *, source: str, kind: str, detail: str | None, now: float) -> JobChange:
    """An event on the job's history and nothing else (e.g. the fallback giving up)."""
    return JobChange(job_id, events=(NewEvent(now, source, kind, None, detail),))
