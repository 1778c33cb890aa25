"""The query API: job records and their files, registration, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from typing import Any

import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from openrouter_video import (
    ALL_STATUSES,
    COMPLETED,
    TERMINAL_STATUSES,
    is_valid_job_id,
)

from . import contract
from .auth import principal_of
from .contract import (
    MAX_INDEX,
    MAX_LIMIT,
    ContractError,
    parse_time,
    present_delivery,
    present_job,
    present_summary,
)
from .domain.model import JobFilter, JobRecord
from .domain.pages import DELIVERY_STATES, UNPROCESSED
from .domain.tokens import Principal
from .errors import error_response
from .state import ReceiverState, state_of

log = structlog.get_logger("receiver.api")

_ASCII_INDEX = re.compile(r"[0-9]{1,19}")  # str.isdigit() also accepts '²' and other Unicode digits
_TIME_FIELDS = ("created_at", "submitted_at", "first_seen_at", "updated_at", "terminal_at", "at")


class BadRequestBody(Exception):
    """A request body the API refuses; answered as `error_response(status, message)` (see receiver.app)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_json_object(request: Request, shape: str) -> dict[str, Any]:
    """The request body as a JSON object, or BadRequestBody with a one-line reason naming `shape`.

    A body over the size cap never gets here whole: BodyLimitMiddleware stops the read and answers 413.
    """
    try:
        raw = await request.body()
    except ClientDisconnect:
        raise BadRequestBody(400, "the request body did not arrive whole") from None
    try:
        payload = json.loads(raw)
    except RecursionError:  # json recurses per nesting level: "[[[[..." deep enough crashes it
        raise BadRequestBody(400, "body JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequestBody(400, f"body must be JSON: {shape}") from None
    if not isinstance(payload, dict):
        raise BadRequestBody(400, f"body must be a JSON object: {shape}")
    return payload


async def list_jobs(request: Request) -> Response:
    q = request.query_params
    status = q.get("status") or None
    if status is not None and status not in ALL_STATUSES:
        return error_response(400, f"status must be one of {', '.join(ALL_STATUSES)}")
    try:
        limit = int(q.get("limit", "50"))
    except ValueError:
        return error_response(400, "limit must be a whole number")
    if not 1 <= limit <= MAX_LIMIT:
        return error_response(400, f"limit must be between 1 and {MAX_LIMIT}")
    try:
        since, until = parse_time("since", q.get("since")), parse_time("until", q.get("until"))
        filters = JobFilter(
            status=status,
            model=q.get("model") or None,
            since=since,
            until=until,
            owner=principal_of(request).only_owner,  # an app lists its own jobs only
        )
        page = await state_of(request).stores.jobs.page(filters, cursor=q.get("cursor") or None, limit=limit)
    except ValueError as exc:
        message = str(exc) if "must be" in str(exc) else "cursor is not one this API returned"
        return error_response(400, message)
    return _json(
        contract.JobList(
            [contract.shape(present_summary(j), contract.JobSummary) for j in page.items], page.cursor
        )
    )


async def get_job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    record = await find_job(state_of(request), job_id, principal_of(request))
    if record is None:
        return error_response(404, f"no job {job_id[:100]!r}")
    return job_response(record)


async def find_job(s: ReceiverState, job_id: str, principal: Principal) -> JobRecord | None:
    """The job's record, with every delivery acknowledged for it applied (None: no such job, or one
    `principal` may not see: another app's job answers as if it did not exist)."""
    record = await _find_job(s, job_id)
    return record if record is not None and principal.sees(record.owner) else None


async def _find_job(s: ReceiverState, job_id: str) -> JobRecord | None:
    record = await s.stores.jobs.get(job_id) if is_valid_job_id(job_id) else None
    # An acknowledged delivery the applier has not reached yet must not read as "no such job": apply
    # that job's stored deliveries now (rarely needed: the applier runs milliseconds behind).
    if record is None and is_valid_job_id(job_id):
        if await s.stores.deliveries.pending_count():
            await s.applier.apply_job_now(job_id)
        # Read again whatever that did: an applier (here, or another replica's) may have committed
        # this job's delivery after the first read, and then no delivery is pending any more.
        record = await s.stores.jobs.get(job_id)
    return record


def job_response(record: JobRecord, headers: dict[str, str] | None = None) -> Response:
    response = _json(contract.shape(present_job(record), contract.Job))
    response.headers.update(headers or {})
    return response


async def get_content(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    if not is_valid_job_id(job_id):
        return error_response(404, f"no job {job_id[:100]!r}")
    raw_index = request.query_params.get("index", "0")
    if not _ASCII_INDEX.fullmatch(raw_index) or int(raw_index) > MAX_INDEX:
        return error_response(400, f"index must be a whole number from 0 to {MAX_INDEX}")
    index = int(raw_index)
    raw_redirect = request.query_params.get("redirect")
    if raw_redirect not in (None, "0", "1"):
        return error_response(400, "redirect must be 1 (a presigned URL, S3 only) or 0 (streamed)")
    stores = state_of(request).stores
    principal = principal_of(request)
    if not principal.is_admin:  # an app's own jobs only (one more read, not on the admin's path)
        owned = await stores.jobs.get(job_id)
        if owned is None or not principal.sees(owned.owner):
            return error_response(404, f"no job {job_id!r}")
    key = await stores.downloads.content_key(job_id, index)
    if key is not None:
        answer = await stores.content.response(
            key,
            request.headers,
            filename=f"{job_id}-{raw_index}.mp4",
            redirect=None if raw_redirect is None else raw_redirect == "1",
        )
        if answer is not None:
            return answer
    return error_response(404, _why_no_content(await stores.jobs.get(job_id), job_id, index, key))


def _why_no_content(record: JobRecord | None, job_id: str, index: int, key: str | None) -> str:
    """What a 404 of the content endpoint says: which of the reasons it is (only on the miss path)."""
    if record is None:
        return f"no job {job_id!r}"
    output = next((o for o in record.outputs if o.index == index), None)
    status = record.status
    if output is None:
        if status in TERMINAL_STATUSES and status != COMPLETED:
            return f"job {job_id} {status}: {record.error or 'no error given upstream'}"
        if status == COMPLETED:
            count = len(record.outputs)
            return f"job {job_id} has no output {index} (it has {count} output{'s' * (count != 1)})"
        return f"output {index} of job {job_id} is not downloaded yet (job {status})"
    state = output.state
    if state == "done":  # recorded done, yet the content is not there
        where = f": {key}" if key else ""
        return f"output {index} of job {job_id} is recorded as downloaded but its content is missing{where}"
    if state == "deleted":
        return f"output {index} of job {job_id} was deleted: {output.error}"
    if state in ("failed", "gone"):
        return f"output {index} of job {job_id} could not be downloaded (state {state}): {output.error}"
    return f"output {index} of job {job_id} is not downloaded yet (state {state}); see GET /jobs/{job_id}"


_DELIVERY_FILTERS = (*DELIVERY_STATES, UNPROCESSED)


async def list_deliveries(request: Request) -> Response:
    """Stored webhook deliveries, newest first: what `openrouter-video deliveries` shows (never a body)."""
    q = request.query_params
    state = q.get("state") or None
    if state is not None and state not in _DELIVERY_FILTERS:
        return error_response(400, f"state must be one of {', '.join(_DELIVERY_FILTERS)}")
    limit = _limit(q.get("limit", "50"))
    if limit is None:
        return error_response(400, f"limit must be a whole number between 1 and {MAX_LIMIT}")
    try:
        page = await state_of(request).stores.deliveries.page(
            state=state, cursor=q.get("cursor") or None, limit=limit
        )
    except ValueError:
        return error_response(400, "cursor is not one this API returned")
    return _json(
        contract.DeliveryList(
            [contract.shape(present_delivery(r), contract.StoredDelivery) for r in page.items], page.cursor
        )
    )


async def reprocess_deliveries(request: Request) -> Response:
    """Apply stored deliveries not applied (all, or `ids`): `openrouter-video reprocess` over HTTP."""
    ids: list[int] | None = None
    if await request.body():  # no body: every delivery not applied
        payload = await read_json_object(request, '{"ids": [1, 2, ...]}')
        try:
            ids = contract.parse(payload, contract.Reprocess).ids
        except ContractError as exc:
            return error_response(400, str(exc))
    applied = await state_of(request).applier.reprocess(ids or None)
    done = sum(a.applied for a in applied)
    log.info("deliveries.reprocessed", count=len(applied), applied=done, ids=ids)
    return _json(
        contract.ReprocessResult(
            [
                contract.Reprocessed(a.delivery_id, a.idempotency_key, a.job_id, a.status, a.applied, a.error)
                for a in applied
            ],
            applied=done,
            unprocessed=len(applied) - done,
        )
    )


def _limit(raw: str) -> int | None:
    if not _ASCII_INDEX.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        return None
    return int(raw)


async def delete_job(request: Request) -> Response:
    """Admin: delete a job record, its events and outputs, and its content (partial downloads too)."""
    job_id = request.path_params["job_id"]
    stores = state_of(request).stores
    record = await stores.jobs.get(job_id) if is_valid_job_id(job_id) else None
    kept = await stores.jobs.delete(job_id) if record is not None else None
    if record is None or kept is None:
        return error_response(404, f"no job {job_id[:100]!r}")
    # Every output's key, not only the done ones: a partial download of any goes too.
    keys = {*kept, *(stores.content.key(job_id, o.index) for o in record.outputs)}
    freed = await stores.content.delete(sorted(keys))
    log.warning("job.deleted", job_id=job_id, files=len(kept), freed_bytes=freed)
    return _json(contract.Deleted(job_id, len(kept), freed))


def _json(value: object, status: int = 200) -> Response:
    return Response(contract.encode(value), status_code=status, media_type="application/json")


async def healthz(request: Request) -> Response:
    return _json(contract.Health("ok"))


async def readyz(request: Request) -> Response:
    s = state_of(request)
    problems = []
    try:
        await asyncio.wait_for(s.stores.health.check_writable(), timeout=5)
    except Exception as exc:  # any failure here means "not ready", with the reason shown
        problems.append(f"database not writable: {exc or type(exc).__name__}")
    free = disk_free(s)
    if free is not None and free < s.settings.min_free_bytes:
        problems.append(f"disk space low: {free} bytes free, floor {s.settings.min_free_bytes}")
    answer = contract.Readiness("ready" if not problems else "not ready", problems, free or 0)
    return _json(answer, status=200 if not problems else 503)


def disk_free(s: ReceiverState) -> int | None:
    """Free bytes where the receiver writes to disk: the data dir (the SQLite store, local videos);
    None when it writes to no local disk (PostgreSQL and S3)."""
    free = s.stores.content.free_bytes()
    if free is None and s.settings.database_url is None:
        free = shutil.disk_usage(s.settings.data_dir).free
    return free


async def metrics(request: Request) -> Response:
    s = state_of(request)
    stores, gauges = s.stores, s.metrics
    try:  # the store's gauges, read now; a store that cannot answer leaves the last values shown
        gauges.set_gauge("receiver_fetch_queue_depth", await stores.downloads.depth())
        gauges.set_gauge("receiver_deliveries_pending", await stores.deliveries.pending_count())
        gauges.set_jobs_by_status(await stores.jobs.counts_by_status())
        outbox = await stores.notifications.counts()
        gauges.set_gauge("receiver_notifications_pending", outbox["pending"])
        gauges.set_gauge("receiver_notifications_dead", outbox["dead"])
    except Exception as exc:
        log.warning("metrics.store_unavailable", error=str(exc) or type(exc).__name__)
    gauges.set_gauge("receiver_disk_free_bytes", disk_free(s) or 0)
    gauges.set_gauge("receiver_waits_open", s.watch.waiting)
    gauges.set_gauge("receiver_event_streams_open", s.watch.open_streams)
    return PlainTextResponse(gauges.render(), media_type="text/plain; version=0.0.4")
