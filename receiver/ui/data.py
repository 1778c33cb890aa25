"""Everything the dashboard reads or changes, in one place: the adapter between the pages and the store.

The rest of `receiver/ui` never touches the store, SQL or `receiver.records`: it calls these async
functions with the app's `ReceiverState` and gets typed records back (`receiver.domain.model` where the
shape exists, small dataclasses below where it is the dashboard's own). Today they run on the
SQLite store's dashboard methods (the `dashboard` sections of `receiver.records` and
`receiver.store`) and on the applier and fetcher; re-pointing the dashboard at another store means
re-implementing this file, nothing else.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import FileResponse, Response

from openrouter_video import is_valid_job_id

from .. import records
from ..domain.model import DeliveryRecord, EventRecord, JobRecord, OutputRecord
from ..state import ReceiverState

# Who an operator's action is recorded as, in a job's events.
ACTOR = "dashboard"
MODELS_CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class JobQuery:
    """What the jobs page asks for: filters (all optional), a search, and where in the listing."""

    status: str | None = None
    model: str | None = None
    since: float | None = None
    until: float | None = None
    search: str | None = None
    cursor: str | None = None
    newer: bool = False  # the page just newer than `cursor` (going back), else the one older
    limit: int = 50


@dataclass(frozen=True)
class FilterTotal:
    jobs: int
    cost: float


@dataclass(frozen=True)
class JobsPage:
    jobs: list[JobRecord]
    older: str | None  # cursor of the next (older) page
    newer: str | None  # cursor of the previous (newer) page; None on the first page
    searched_to: float | None  # a search stopped at this creation time (None: it saw every job)
    page_cost: float  # total cost of the jobs on this page
    filter_total: FilterTotal | None  # of the whole filter; None when too many jobs match to add cheaply
    total_cap: int  # the most jobs a filter total adds up
    search_window: int  # the most jobs one page of a search examines


@dataclass(frozen=True)
class TimelineEntry:
    at: float
    source: str
    kind: str
    status: str | None
    detail: str | None
    delivery_id: int | None = None


@dataclass(frozen=True)
class JobView:
    record: JobRecord  # with outputs and events
    timeline: list[TimelineEntry]
    poll_attempts: int
    next_poll_at: float | None


@dataclass(frozen=True)
class AttentionOutput:
    """An output whose download failed for good or is waiting to be tried again."""

    job_id: str
    index: int
    state: str
    attempts: int
    error: str | None
    updated_at: float
    next_attempt_at: float | None
    model: str | None


@dataclass(frozen=True)
class Reprocessed:
    delivery_id: int
    job_id: str | None
    applied: bool
    error: str | None


@dataclass(frozen=True)
class Health:
    pending_deliveries: int
    download_queue: int
    disk_free_bytes: int
    disk_floor_bytes: int
    last_webhook_at: float | None


@dataclass(frozen=True)
class ChangeToken:
    """Where the store's change feed stands; compares equal when nothing a page shows has changed."""

    events: int
    deliveries: int


@dataclass
class _ModelsCache:
    names: list[str] = field(default_factory=list)
    at: float = -1e9


_models_caches: dict[int, _ModelsCache] = {}


def _job(row: dict[str, Any]) -> JobRecord:
    return JobRecord(
        id=row["id"],
        model=row["model"],
        prompt=row["prompt"],
        status=row["status"],
        created_at=row["created_at"],
        submitted_at=row["submitted_at"],
        first_seen_at=row["first_seen_at"],
        updated_at=row["updated_at"],
        terminal_at=row["terminal_at"],
        source=row["source"],
        registered=bool(row["registered"]),
        error=row["error"],
        cost=row["cost"],
        generation_id=row["generation_id"],
        outputs=tuple(
            OutputRecord(
                index=o["index"],
                state=o["state"],
                attempts=o["attempts"],
                bytes=o["bytes"],
                sha256=o["sha256"],
                error=o["error"],
                updated_at=o["updated_at"],
            )
            for o in row.get("outputs", ())
        ),
        events=tuple(
            EventRecord(
                at=e["at"], source=e["source"], kind=e["kind"], status=e["status"], detail=e["detail"]
            )
            for e in row.get("events", ())
        ),
    )


async def list_jobs(state: ReceiverState, query: JobQuery) -> JobsPage:
    """A page of jobs, newest first, and what they cost; ValueError for a cursor it did not issue."""
    filters = {"status": query.status, "model": query.model, "since": query.since, "until": query.until}
    page = state.store.dashboard_jobs(
        **filters, search=query.search, cursor=query.cursor, newer=query.newer, limit=query.limit
    )
    total = state.store.dashboard_cost_total(**filters, search=query.search)
    jobs = [_job(row) for row in page["jobs"]]
    return JobsPage(
        jobs=jobs,
        older=page["older"],
        newer=page["newer"],
        searched_to=page["searched_to"],
        page_cost=sum(j.cost or 0.0 for j in jobs),
        filter_total=FilterTotal(*total) if total is not None else None,
        total_cap=records.TOTAL_CAP,
        search_window=records.SEARCH_WINDOW,
    )


async def list_models(state: ReceiverState) -> list[str]:
    """The model names jobs have (cached briefly: the filter's choices, not a record)."""
    cache = _models_caches.setdefault(id(state.store), _ModelsCache())
    now = time.monotonic()
    if now - cache.at > MODELS_CACHE_SECONDS:
        cache.names, cache.at = state.store.distinct_models(), now
    return cache.names


async def get_job(state: ReceiverState, job_id: str) -> JobView | None:
    """One job with its outputs and timeline; None when there is no such job."""
    if not is_valid_job_id(job_id):
        return None
    store = state.store
    row = store.get_job(job_id)
    if row is None and store.pending_deliveries():
        # An acknowledged delivery the applier has not reached yet must not read as "no such job".
        await state.applier.apply_job_now(job_id)
        row = store.get_job(job_id)
    if row is None:
        return None
    polling = store.job_polling(job_id) or {"poll_attempts": 0, "next_poll_at": None}
    return JobView(
        record=_job(row),
        timeline=[TimelineEntry(**entry) for entry in store.job_timeline(job_id)],
        poll_attempts=polling["poll_attempts"],
        next_poll_at=polling["next_poll_at"],
    )


async def find_job(state: ReceiverState, job_id: str) -> JobRecord | None:
    """The job whose id is exactly `job_id`, if any (a search that is a whole job id)."""
    if not is_valid_job_id(job_id):
        return None
    row = state.store.get_job(job_id)
    return _job(row) if row is not None else None


async def content_response(
    state: ReceiverState, job_id: str, index: int, *, download: bool = False
) -> Response | None:
    """The downloaded video of an output (Range requests honoured), or None when it is not there."""
    if not is_valid_job_id(job_id):
        return None
    path = state.store.output_path(job_id, index)
    if path is None or not os.path.isfile(path):
        return None
    return FileResponse(
        path,
        media_type="video/mp4",
        filename=f"{job_id}-{index}.mp4",
        content_disposition_type="attachment" if download else "inline",
    )


async def unprocessed_deliveries(state: ReceiverState, limit: int = 100) -> list[DeliveryRecord]:
    """Stored deliveries not applied (failed, or still pending), newest first."""
    rows, _cursor = state.store.list_deliveries(state="unprocessed", cursor=None, limit=limit)
    return [DeliveryRecord(**row) for row in rows]


async def reprocess(state: ReceiverState, delivery_ids: list[int] | None) -> list[Reprocessed]:
    """Apply stored deliveries not applied now (those ids, or all of them), as `reprocess` does."""
    applied = await state.applier.reprocess(delivery_ids or None)
    return [Reprocessed(a.delivery_id, a.job_id, a.applied, a.error) for a in applied]


async def outputs_needing_attention(state: ReceiverState, limit: int = 100) -> list[AttentionOutput]:
    return [AttentionOutput(**row) for row in state.store.outputs_needing_attention(limit)]


async def retry_output(state: ReceiverState, job_id: str, index: int) -> str | None:
    """Download a failed, gone or waiting output again now, attempts reset; the state it was in
    (None: no such output, or not one to retry)."""
    if not is_valid_job_id(job_id):
        return None
    was = await state.store.retry_output(job_id, index, who=ACTOR)
    if was is not None:
        state.fetcher.wake()
    return was


async def health(state: ReceiverState) -> Health:
    store, settings = state.store, state.settings
    usage = await asyncio.to_thread(shutil.disk_usage, settings.data_dir)
    return Health(
        pending_deliveries=store.pending_deliveries(),
        download_queue=store.queue_depth(),
        disk_free_bytes=usage.free,
        disk_floor_bytes=settings.min_free_bytes,
        last_webhook_at=store.last_delivery_at(),
    )


async def change_token(state: ReceiverState) -> ChangeToken:
    return ChangeToken(*state.store.change_token())


async def jobs_changed_since(state: ReceiverState, token: ChangeToken) -> list[str]:
    """Ids of the jobs that changed after `token` (more than the store's limit: a partial list)."""
    return state.store.jobs_changed_since(token.events)


def on_applied(state: ReceiverState, callback: Callable[[], None]) -> Callable[[], None]:
    """Call `callback` whenever this process applies a delivery; returns the function that stops it."""

    def listener(_applied: object) -> None:
        callback()

    state.applier.listeners.append(listener)
    return lambda: state.applier.listeners.remove(listener)
