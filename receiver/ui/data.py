"""Everything the dashboard reads or changes, in one place: the adapter between the pages and the stores.

The rest of `receiver/ui` never touches a store: it calls these async functions with the app's
`ReceiverState` and gets typed records back (`receiver.domain.model`; the small dataclasses below are
the dashboard's own shapes). They run on the configured backend's `stores.dashboard` (SQLite or
PostgreSQL: see storage.base.Dashboard), `stores.jobs`, `stores.deliveries`, `stores.downloads` and
the content store, on this process's applier, and on its submitter (the Submit page pays through the
same `Submitter.submit` as `POST /jobs`); no backend is imported here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response

from openrouter_video import VideoModel, is_valid_job_id

from ..api import disk_free
from ..domain.model import (
    SEARCH_WINDOW,
    TOTAL_CAP,
    AppliedDelivery,
    AttentionOutput,
    ChangeToken,
    DeliveryRecord,
    FilterTotal,
    JobFilter,
    JobRecord,
    JobSearch,
    SubmissionRecord,
    TimelineEntry,
)
from ..domain.tokens import ADMIN_NAME, BUILTIN_ADMIN
from ..state import ReceiverState
from ..submitting import CannotSubmit, Submitted

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
class JobView:
    record: JobRecord  # with outputs and events
    timeline: list[TimelineEntry]
    poll_attempts: int
    next_poll_at: float | None


@dataclass(frozen=True)
class Health:
    pending_deliveries: int
    download_queue: int
    disk_free_bytes: int | None  # None: the receiver writes to no local disk (PostgreSQL and S3)
    disk_floor_bytes: int
    last_webhook_at: float | None


@dataclass
class _ModelsCache:
    names: list[str] = field(default_factory=list)
    at: float = -1e9


_models_caches: dict[int, _ModelsCache] = {}


async def list_jobs(state: ReceiverState, query: JobQuery) -> JobsPage:
    """A page of jobs, newest first, and what they cost; ValueError for a cursor it did not issue."""
    filters = JobFilter(status=query.status, model=query.model, since=query.since, until=query.until)
    dashboard = state.stores.dashboard
    page = await dashboard.jobs_page(
        JobSearch(filters, query.search, query.cursor, query.newer, query.limit, SEARCH_WINDOW)
    )
    return JobsPage(
        jobs=page.jobs,
        older=page.older,
        newer=page.newer,
        searched_to=page.searched_to,
        page_cost=sum(j.cost or 0.0 for j in page.jobs),
        filter_total=await dashboard.filter_total(filters, query.search, cap=TOTAL_CAP),
        total_cap=TOTAL_CAP,
        search_window=SEARCH_WINDOW,
    )


async def list_models(state: ReceiverState) -> list[str]:
    """The model names jobs have (cached briefly: the filter's choices, not a record)."""
    cache = _models_caches.setdefault(id(state.stores), _ModelsCache())
    now = time.monotonic()
    if now - cache.at > MODELS_CACHE_SECONDS:
        cache.names, cache.at = await state.stores.dashboard.models(), now
    return cache.names


async def get_job(state: ReceiverState, job_id: str) -> JobView | None:
    """One job with its outputs and timeline; None when there is no such job."""
    if not is_valid_job_id(job_id):
        return None
    stores = state.stores
    record = await stores.jobs.get(job_id)
    if record is None and await stores.deliveries.pending_count():
        # An acknowledged delivery the applier has not reached yet must not read as "no such job".
        await state.applier.apply_job_now(job_id)
        record = await stores.jobs.get(job_id)
    if record is None:
        return None
    polling = await stores.dashboard.polling(job_id)
    return JobView(
        record=record,
        timeline=await stores.dashboard.timeline(job_id),
        poll_attempts=polling.poll_attempts if polling else 0,
        next_poll_at=polling.next_poll_at if polling else None,
    )


async def find_job(state: ReceiverState, job_id: str) -> JobRecord | None:
    """The job whose id is exactly `job_id`, if any (a search that is a whole job id)."""
    return await state.stores.jobs.get(job_id) if is_valid_job_id(job_id) else None


async def content_response(
    state: ReceiverState, job_id: str, index: int, headers: Mapping[str, str], *, download: bool = False
) -> Response | None:
    """The downloaded video of an output, as the content store serves it (Range honoured), or None
    when it is not there. `download`: as an attachment rather than shown in the page."""
    if not is_valid_job_id(job_id):
        return None
    stores = state.stores
    key = await stores.downloads.content_key(job_id, index)
    if key is None:
        return None
    # Streamed by the receiver even when S3 redirects by default: the page's CSP (media-src 'self')
    # plays only what this origin serves, and a session cookie is what lets the browser in here.
    response = await stores.content.response(key, headers, filename=f"{job_id}-{index}.mp4", redirect=False)
    disposition = response.headers.get("content-disposition", "") if response is not None else ""
    if response is not None and download and disposition.startswith("inline"):
        response.headers["content-disposition"] = "attachment" + disposition[len("inline") :]
    return response


async def unprocessed_deliveries(state: ReceiverState, limit: int = 100) -> list[DeliveryRecord]:
    """Stored deliveries not applied (failed, or still pending), newest first."""
    page = await state.stores.deliveries.page(state="unprocessed", cursor=None, limit=limit)
    return list(page.items)


async def reprocess(state: ReceiverState, delivery_ids: list[int] | None) -> list[AppliedDelivery]:
    """Apply stored deliveries not applied now (those ids, or all of them), as the API's reprocess does."""
    return await state.applier.reprocess(delivery_ids or None)


async def outputs_needing_attention(state: ReceiverState, limit: int = 100) -> list[AttentionOutput]:
    return await state.stores.dashboard.outputs_needing_attention(limit)


async def retry_output(state: ReceiverState, job_id: str, index: int) -> str | None:
    """Download a failed, gone or waiting output again now, attempts reset; the state it was in
    (None: no such output, or not one to retry). The store wakes the fetchers (every replica's)."""
    if not is_valid_job_id(job_id):
        return None
    return await state.stores.dashboard.retry_output(job_id, index, who=ACTOR)


async def health(state: ReceiverState) -> Health:
    stores = state.stores
    return Health(
        pending_deliveries=await stores.deliveries.pending_count(),
        download_queue=await stores.downloads.depth(),
        disk_free_bytes=disk_free(state),
        disk_floor_bytes=state.settings.min_free_bytes,
        last_webhook_at=await stores.dashboard.last_delivery_at(),
    )


async def changes(state: ReceiverState, token: ChangeToken | None) -> tuple[ChangeToken, dict[str, object]]:
    """What changed since `token` (None: only where the feed stands), as a page is told it: the ids
    of the jobs that changed, `all` when more did, `deliveries` when a webhook was stored."""
    found = await state.stores.dashboard.changes_since(token)
    return found.token, {"jobs": list(found.jobs), "all": found.all, "deliveries": found.deliveries}


def on_applied(state: ReceiverState, callback: Callable[[], None]) -> Callable[[], None]:
    """Call `callback` whenever this process applies a delivery; returns the function that stops it."""

    def listener(_applied: object) -> None:
        callback()

    state.applier.listeners.append(listener)
    return lambda: state.applier.listeners.remove(listener)


# -- submitting (through the same submitter as `POST /jobs`) --------------------------------------


def can_submit(state: ReceiverState) -> bool:
    """Submitting needs RECEIVER_PUBLIC_URL: OpenRouter is given the receiver's own webhook URL."""
    return state.settings.callback_url is not None


async def catalog(state: ReceiverState) -> list[VideoModel]:
    """The model catalog, from the submitter's cached copy (CannotSubmit when it cannot be fetched)."""
    return await state.submitter.catalog()


async def check_submit(state: ReceiverState, body: dict[str, Any]) -> VideoModel:
    """The model's entry once it allows `body` (an upstream body): ValidationError, CannotSubmit."""
    return await state.submitter.check(body)


async def submit(
    state: ReceiverState, key: str, fields: dict[str, Any], body: dict[str, Any], *, who: str
) -> Submitted:
    """The paid submit, exactly once per key: `POST /jobs`'s own path (`Submitter.submit`), as the
    signed-in token `who` (a named admin token's job is its own, under its own caps)."""
    principal = BUILTIN_ADMIN
    if who != ADMIN_NAME:
        named = await state.auth.named(who, state.stores.tokens)
        if named is None:  # revoked since the page was checked
            raise CannotSubmit(f"token {who!r} is no longer valid: sign in again")
        principal = named
    return await state.submitter.submit(key, fields, body, principal=principal)


async def get_submission(state: ReceiverState, ref: str) -> SubmissionRecord | None:
    return await state.stores.submissions.get(ref)
