"""What the dashboard's store reads and its one write decide, the same for every backend.

A backend runs the queries (storage/*/dashboard.py) and hands the rows here: the search patterns,
the cursors of a page that goes both ways, a job's timeline merged from its events and deliveries,
and what an operator's "download this output again" changes. Pure code, no I/O.
"""

from __future__ import annotations

from .model import DeliveryRecord, JobRecord, JobSearch, JobSearchPage, TimelineEntry
from .pages import encode_cursor
from .plan import NewEvent

# Outputs an operator may send back to the queue: ended (failed, gone) or waiting for their next attempt.
# One downloading is a worker's; one done or deleted has nothing to fetch.
RETRYABLE_OUTPUT_STATES = ("failed", "gone", "pending")

_OUTCOME = {"applied": "applied", "failed": "not applied", "pending": "not applied yet"}


def like_patterns(text: str) -> tuple[str, str]:
    """(prompt contains `text`, id starts with `text`) as LIKE patterns with `\\` as the escape
    character: `%` and `_` in a search are literal."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%", f"{escaped}%"


def jobs_page(
    rows: list[JobRecord], search: JobSearch, edge: tuple[float, str] | None = None
) -> JobSearchPage:
    """The page of `rows` as read: up to `limit + 1` jobs, newest first (oldest first when going
    `newer`); one more than `limit` says there are more that way. `edge`: (created_at, id) of the last
    job a search examined, when its window ended before the jobs did (the next page searches on from there)."""
    limit, cursor, newer = search.limit, search.cursor, search.newer
    more = len(rows) > limit
    jobs = rows[:limit]
    if newer:
        jobs.reverse()

    def key(job: JobRecord) -> str:
        return encode_cursor(job.created_at, job.id)

    edge_cursor = encode_cursor(*edge) if edge is not None else None
    if newer:
        older = key(jobs[-1]) if jobs else cursor
        newer_cursor = edge_cursor or (key(jobs[0]) if more else None)
    else:
        older = edge_cursor or (key(jobs[-1]) if more else None)
        newer_cursor = (key(jobs[0]) if jobs else cursor) if cursor else None
    return JobSearchPage(
        jobs=jobs,
        older=older,
        newer=newer_cursor,
        searched_to=edge[0] if edge is not None else None,
    )


def timeline(events: list[TimelineEntry], deliveries: list[DeliveryRecord]) -> list[TimelineEntry]:
    """What happened to a job, oldest first: its events (in the order stored) and every webhook
    delivery stored for it, each delivery before what it did at the same instant. Pending deliveries
    are not tied to a job yet (their job id is read when applied), so they show once applied or failed."""
    lines = [(e.at, 1, n, e) for n, e in enumerate(events)]
    for n, d in enumerate(deliveries):
        detail = f"{d.event_type or 'event'} {_OUTCOME.get(d.state, d.state)}"
        if d.error:
            detail += f": {d.error}"
        entry = TimelineEntry(d.received_at, "webhook", "delivery", d.status, detail, delivery_id=d.id)
        lines.append((d.received_at, 0, n, entry))
    lines.sort(key=lambda line: line[:3])
    return [line[3] for line in lines]


def plan_output_retry(index: int, state: str, error: str | None, *, now: float, who: str) -> NewEvent | None:
    """An operator's retry of output `index` in `state`: the job event recording it, or None when the
    output is not one to retry (nothing changes). The backend then stores the output as pending, due
    `now`, attempts reset, error and claim cleared."""
    if state not in RETRYABLE_OUTPUT_STATES:
        return None
    was = state + (f": {error}" if error else "")
    return NewEvent(now, who, "download_retry", None, f"output {index}: retry requested (was {was})")
