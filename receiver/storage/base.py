"""The storage seam: what the receiver needs of a store, split by who uses it.

Every backend (SQLite in the data dir, PostgreSQL) implements all these interfaces; the decisions
(what an event does to a job, what a poll answer changes, the retry plan of a download) are pure
code in `receiver.domain`, which a backend calls between reading the current state and storing the
decided change, in one transaction. A backend stores; it never decides.

Who uses what:

- `DeliveryLog`: the webhook intake (record, the only thing a 2xx waits for), the applier (apply
  pending deliveries, each claimed by one worker), the query API (list, reprocess).
- `Jobs`: the query API and the CLI (read, list, register, delete), retention.
- `DownloadQueue`: the fetcher. Outputs are claimed by a worker id under a lease it renews; only the
  claimant records the outcome; a claim whose lease ran out is free again (its worker died).
- `PollQueue`: the fallback poller. A job is claimed for one poll (worker id, lease) so that two
  replicas never poll the same job at the same time; `schedule` records the outcome and frees it.
- `Health`: readiness and metrics.
- `Dashboard`: the web dashboard (receiver/ui/data.py): its jobs page (filters, a bounded search,
  keyset pages both ways), a job's timeline, the outputs needing attention, the change feed its live
  pages follow (on every replica), and its one write, an operator's retry of a download.

The gateway's three (defined in storage/gateway.py, carried by `Stores` like the rest):

- `Submissions`: the submit endpoint (a paid submit recorded before the call, then its outcome), the
  applier (a webhook carrying a submission's reference ties it to its job), the start-up sweep.
- `Tokens`: the named API tokens of apps (`openrouter-video tokens`), looked up by hash on each
  request (receiver/auth.py caches briefly); only a token's hash is stored, never the token.
- `Notifications`: the outbox of signed notifications to apps. Rows are written by the other
  interfaces' transactions (the change that ends a job writes its notification, as
  `domain.notifications.plan_notification` decides); the notifier claims due ones (worker id, lease)
  and records each attempt; the API and the CLI list them and send them back to pending.

`Wakeups` lets a worker sleep until there may be work (an in-process event for SQLite, LISTEN/NOTIFY
for PostgreSQL, so a download queued by one replica wakes the fetchers of the others). Topic `jobs`:
a job's status or an output's state changed (committed); the watcher of long-polls and event streams
(receiver/watch.py) sleeps on it, so a change made on any replica wakes the waits of every replica.
Topic `notifications`: a notification may have become due (written, or sent back to pending).

Errors: a store that cannot commit raises `StoreUnavailable` (nothing of the write was kept); a
cursor it did not issue raises ValueError. Nothing else escapes a backend: driver exceptions are
translated in the backend.

Content (the videos) is a separate seam: `ContentStore`, local folder or S3. Records hold its
content key (`<job_id>/<index>.mp4`), never a local path.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from openrouter_video import VideoJob

from ..domain.model import (
    CHANGES_LIMIT,
    AppliedBatch,
    AppliedDelivery,
    ApplyResult,
    AttentionOutput,
    Changes,
    ChangeToken,
    Delivery,
    DownloadClaim,
    FilterTotal,
    JobFilter,
    JobPolling,
    JobRecord,
    JobSearch,
    JobSearchPage,
    Page,
    PollClaim,
    RecordedDelivery,
    TimelineEntry,
)
from .gateway import Notifications, Submissions, Tokens

if TYPE_CHECKING:
    from starlette.responses import Response

    from ..domain.retention import Policy, Pruned


class StoreUnavailable(Exception):
    """The store could not commit (disk full, database down, I/O error): nothing of the write was kept."""


def new_worker_id() -> str:
    """Who holds a claim: host, process and a random part (a restarted process is a new worker)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class DeliveryLog(Protocol):
    async def record(self, delivery: Delivery) -> RecordedDelivery:
        """Keep a verified delivery once per idempotency key (and replay key), as `pending`. Committed
        before it returns: the webhook's 2xx waits for this and nothing else."""
        ...

    async def apply_pending(self, limit: int, *, isolate: bool = False) -> AppliedBatch:
        """Claim up to `limit` pending deliveries (no other worker gets them), apply each to its job,
        oldest first; `isolate`: one that raises is marked failed with the reason, the rest go on."""
        ...

    async def apply_pending_for_job(self, job_id: str) -> list[AppliedDelivery]:
        """Apply one job's pending deliveries now (a query must show an acknowledged delivery)."""
        ...

    async def reprocess(self, delivery_ids: list[int] | None) -> list[AppliedDelivery]:
        """Apply stored deliveries not applied (all, or those ids), each isolated."""
        ...

    async def page(self, *, state: str | None, cursor: str | None, limit: int) -> Page:
        """Newest first; `state`: a delivery state or `unprocessed` (failed or pending). Page of
        DeliveryRecord."""
        ...

    async def pending_count(self) -> int: ...


class Jobs(Protocol):
    async def get(self, job_id: str) -> JobRecord | None:
        """The record with its outputs and events (None: no such job)."""
        ...

    async def page(self, filters: JobFilter, *, cursor: str | None, limit: int) -> Page:
        """Newest first (created_at, id), keyset paginated; a Page of JobRecord without outputs/events."""
        ...

    async def register(
        self,
        job_id: str,
        *,
        model: str | None,
        prompt: str | None,
        first_poll_at: float,
        owner: str | None = None,
        notify_url: str | None = None,
    ) -> bool:
        """Track a submitted job (idempotent, webhook first or not); True if the record is new. The
        job takes `owner` (a token's name) if it has none yet; one it has is never changed.
        `notify_url`: where its end is told (a job that already ended is told now)."""
        ...

    async def add_event(self, job_id: str, source: str, kind: str, detail: str | None = None) -> None: ...

    async def delete(self, job_id: str) -> list[str] | None:
        """Delete a job record with its events and outputs; the content keys it held (None: no job)."""
        ...

    async def counts_by_status(self) -> dict[str, int]: ...

    async def prune(self, policy: Policy, now: float, *, dry_run: bool = False) -> Pruned:
        """Apply the retention policy to the records; the caller deletes `Pruned` content after.
        `dry_run`: what would be pruned, nothing kept (the transaction is rolled back)."""
        ...


class DownloadQueue(Protocol):
    lease: float  # seconds a claim lasts without renewal

    async def claim(self, now: float, limit: int) -> list[DownloadClaim]:
        """Due outputs (pending past their next attempt, or under a lease that ran out) for this worker."""
        ...

    async def renew(self, outputs: list[tuple[str, int]]) -> int:
        """Extend this worker's leases on `outputs`; how many it still holds."""
        ...

    async def recover(self) -> int:
        """Claims known dead now (SQLite under the data-dir lock: every other worker's); else 0."""
        ...

    async def finish(self, job_id: str, index: int, *, content_key: str, size: int, sha256: str) -> bool:
        """Record a download done; False (nothing recorded) when this worker no longer holds the claim."""
        ...

    async def retry(
        self, job_id: str, index: int, *, next_at: float, error: str, count_attempt: bool = True
    ) -> bool: ...

    async def end(self, job_id: str, index: int, *, state: Literal["gone", "failed"], error: str) -> bool: ...

    async def content_key(self, job_id: str, index: int) -> str | None:
        """The content key of a done output (None: not downloaded)."""
        ...

    async def depth(self) -> int:
        """Outputs pending or downloading."""
        ...

    async def next_due(self) -> float | None:
        """When the next output falls due (a next attempt, or a lease running out)."""
        ...

    async def live_claims(self, now: float) -> list[tuple[str, int]]:
        """Outputs being downloaded under a claim whose lease has not run out at `now`, any worker's
        (their partial uploads are in progress, not abandoned)."""
        ...


class PollQueue(Protocol):
    async def claim(self, now: float, limit: int) -> list[PollClaim]:
        """Jobs due for a fallback poll, claimed by this worker under a lease."""
        ...

    async def apply_poll(self, job: VideoJob) -> ApplyResult:
        """Move the job forward by what the poll answered (same decisions as a webhook)."""
        ...

    async def schedule(self, job_id: str, next_at: float | None, *, attempted: bool = True) -> None:
        """The next poll (None: no more; a terminal job is never polled again); frees the claim. Dropped
        when another worker holds a live claim on the job (this worker's lease ran out meanwhile)."""
        ...

    async def not_found_upstream(self, job_id: str, detail: str) -> None: ...


class Health(Protocol):
    async def check_writable(self) -> None:
        """Exercise the path a delivery takes (write a delivery row, roll it back); raise if it fails."""
        ...

    def writes_waiting(self) -> int:
        """Writes queued right now (how hard the store is pushed; the applier yields to intake)."""
        ...


class Dashboard(Protocol):
    """The dashboard's reads beyond the query API, each bounded at any table size, and its one write.
    Reprocessing deliveries is the DeliveryLog's `reprocess`, as for the API."""

    async def jobs_page(self, search: JobSearch) -> JobSearchPage:
        """A page of jobs (keyset both ways); a search examines at most `search.window` jobs and
        says where it stopped. ValueError for a cursor it did not issue."""
        ...

    async def filter_total(self, filters: JobFilter, text: str | None, *, cap: int) -> FilterTotal | None:
        """Jobs matching the filters and search text, and their total cost; None when more than `cap`
        jobs match the filters alone (the total would need an unbounded read)."""
        ...

    async def models(self, limit: int = 200) -> list[str]:
        """The model names jobs have (a seek per name through the model index, not a scan)."""
        ...

    async def timeline(self, job_id: str) -> list[TimelineEntry]:
        """The job's events and the webhook deliveries stored for it, oldest first."""
        ...

    async def polling(self, job_id: str) -> JobPolling | None: ...

    async def outputs_needing_attention(self, limit: int) -> list[AttentionOutput]:
        """Failed, gone, or pending after a failed attempt; most recently updated first."""
        ...

    async def retry_output(self, job_id: str, index: int, *, who: str) -> str | None:
        """Send a failed, gone or waiting output back to the queue, due now, attempts reset, with a job
        event saying `who` did; the state it was in (None: no such output, or not one to retry)."""
        ...

    async def changes_since(self, token: ChangeToken | None, *, limit: int | None = CHANGES_LIMIT) -> Changes:
        """What changed since `token` (None: nothing yet, only where the feed stands): the jobs with
        a new event, in the order they changed (at most `limit`, None: every one; `all` when more did),
        whether a delivery was stored. Sees every replica's commits. A look reads a bounded number of
        events; the returned token stands after the last one read, so the rest come on the next look
        and nothing is skipped (the job events' API, GET /events, resumes from it)."""
        ...

    async def last_delivery_at(self) -> float | None:
        """When the newest stored webhook delivery was received."""
        ...


WakeupTopic = Literal["deliveries", "downloads", "jobs", "notifications"]


class Wakeups(Protocol):
    def notify(self, topic: WakeupTopic) -> None:
        """Work of this kind may be waiting (in this process; a backend may tell other replicas too)."""
        ...

    async def wait(self, topic: WakeupTopic, timeout: float) -> bool:
        """Sleep until `notify(topic)` (here or, for PostgreSQL, on any replica) or the timeout; True if woken."""
        ...


@dataclass(frozen=True)
class ContentInfo:
    size: int
    etag: str | None = None  # e.g. the sha256, or the object store's ETag


class ContentStore(Protocol):
    """Where downloaded videos live (a local folder, or an S3 bucket), keyed `<job_id>/<index>.mp4`."""

    def key(self, job_id: str, index: int) -> str:
        """The content key of an output (job id validated: it never escapes the store's root)."""
        ...

    async def sink(self, key: str) -> object:
        """A target the client's `download` streams into: a path for the local store (atomic rename,
        resumable `.part`), an `openrouter_video.AsyncDownloadTarget` for S3 (multipart upload, only
        completed once every check passed). The caller passes it to `download(..., dest)`."""
        ...

    async def stat(self, key: str) -> ContentInfo | None: ...

    async def response(
        self, key: str, headers: Mapping[str, str], *, filename: str, redirect: bool | None = None
    ) -> Response | None:
        """The HTTP answer serving `key` (Range honoured; or a redirect to a short-lived presigned URL
        when `redirect`, None: the store's setting, and the store can): None when there is no such
        content."""
        ...

    async def delete(self, keys: list[str]) -> int:
        """Remove content (and any partial of it); the bytes freed (0 where the store cannot tell)."""
        ...

    async def sweep_partials(self, older_than: float | None = None, keep: Collection[str] = ()) -> int:
        """Remove leftovers of interrupted downloads (`.part` files, abandoned multipart uploads)
        started before `older_than` (None: all, for a store one process serves alone), except those
        of the content keys in `keep` (downloads in progress under a live claim). Never served."""
        ...

    def free_bytes(self) -> int | None:
        """Room left for videos (None: not a concern, an object store)."""
        ...

    async def close(self) -> None:
        """Release what the store holds open (connections); the local store holds nothing."""
        ...


@dataclass
class Stores:
    """The configured stores, opened by `receiver.storage.open_stores` for the app and every CLI command."""

    deliveries: DeliveryLog
    jobs: Jobs
    downloads: DownloadQueue
    polls: PollQueue
    health: Health
    dashboard: Dashboard
    wakeups: Wakeups
    content: ContentStore
    submissions: Submissions
    tokens: Tokens
    notifications: Notifications
    worker: str  # the worker id every claim of this process is made under
    # This process serves the store alone (SQLite under the data-dir lock): a previous run's claims
    # and partial downloads are known dead at start. Never so with replicas.
    exclusive: bool = False
    # What `close` runs, in order (the backend's pool, the content store's client, a lock...).
    closing: tuple[Callable[[], Awaitable[None]], ...] = ()

    async def close(self) -> None:
        for close in self.closing:
            await close()
