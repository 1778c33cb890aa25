"""The PostgreSQL job store (RECEIVER_DATABASE_URL=postgresql://...), for several receiver replicas.

`open_postgres` connects, migrates (safe when replicas start at once) and returns the store objects
of `receiver.storage.base` (all but the content store, which is its own seam). psycopg 3 with its
pool: async, LISTEN/NOTIFY as an async iterator, server-side parameter binding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base import StoreUnavailable, new_worker_id
from ._db import Database
from .applying import DeliveryLog
from .dashboard import Dashboard
from .health import Health
from .jobs import Jobs
from .notifications import Notifications
from .polls import Polls
from .queues import Downloads
from .schema import migrate
from .submissions import Submissions
from .tokens import Tokens
from .wakeups import Wakeups

__all__ = ["PostgresStores", "StoreUnavailable", "open_postgres"]

DOWNLOAD_LEASE = 60.0  # seconds a download claim lasts without renewal (renewed at a third of it)
POLL_LEASE = 60.0  # seconds a fallback poll's claim lasts (a poll is one request upstream)


class PostgresStores:
    """The store objects on one pool, and the LISTEN connection of this process."""

    def __init__(
        self,
        db: Database,
        wakeups: Wakeups,
        *,
        worker: str,
        lease: float,
        poll_lease: float,
        notify_default: str | None = None,
        notify_lease: float | None = None,
    ) -> None:
        self.db = db
        self.worker = worker
        default = notify_default  # RECEIVER_NOTIFY_URL: where a job without its own notify_url is told
        self.deliveries = DeliveryLog(db, wakeups, notify_default=default)
        self.jobs = Jobs(db, notify_default=default)
        self.downloads = Downloads(db, wakeups, worker=worker, lease=lease, notify_default=default)
        self.polls = Polls(db, wakeups, worker=worker, lease=poll_lease, notify_default=default)
        self.health = Health(db)
        self.dashboard = Dashboard(db, wakeups)
        self.wakeups = wakeups
        self.submissions = Submissions(db, notify_default=default)
        self.tokens = Tokens(db)
        self.notifications = Notifications(db, wakeups, worker=worker, lease=notify_lease or lease)

    async def close(self) -> None:
        await self.wakeups.close()
        await self.db.close()


async def open_postgres(
    url: str,
    *,
    worker: str | None = None,
    lease: float = DOWNLOAD_LEASE,
    poll_lease: float = POLL_LEASE,
    pool_size: int = 10,
    timeout: float = 5.0,
    lock_timeout: float = 10.0,
    listen: bool = True,
    notify_default: str | None = None,
    notify_lease: float | None = None,
) -> PostgresStores:
    """Connect to `url`, migrate the schema, and return the stores (StoreUnavailable: cannot connect).

    `timeout`: how long an operation waits for a connection before StoreUnavailable (the intake's 503);
    `lock_timeout`: how long a statement waits for a lock another session holds (then StoreUnavailable).
    `listen`: hold a LISTEN connection for wakeups (a CLI command does not need one).
    """
    db = Database(url, max_size=pool_size, timeout=timeout, lock_timeout=lock_timeout)
    await db.open()
    try:
        await db.run(migrate)
    except BaseException:
        await db.close()
        raise
    wakeups = Wakeups(url, db)
    if listen:
        wakeups.start()
    return PostgresStores(
        db,
        wakeups,
        worker=worker or new_worker_id(),
        lease=lease,
        poll_lease=poll_lease,
        notify_default=notify_default,
        notify_lease=notify_lease,
    )


if TYPE_CHECKING:  # mypy checks here that every object keeps to its interface (storage/base.py, gateway.py)
    from .. import base, gateway

    def _conforms(stores: PostgresStores) -> None:
        deliveries: base.DeliveryLog = stores.deliveries
        jobs: base.Jobs = stores.jobs
        downloads: base.DownloadQueue = stores.downloads
        polls: base.PollQueue = stores.polls
        health: base.Health = stores.health
        dashboard: base.Dashboard = stores.dashboard
        wakeups: base.Wakeups = stores.wakeups
        submissions: gateway.Submissions = stores.submissions
        tokens: gateway.Tokens = stores.tokens
        notifications: gateway.Notifications = stores.notifications
        del deliveries, jobs, downloads, polls, health, dashboard, wakeups, submissions, tokens, notifications
