"""The SQLite store in the data dir (the embedded default): all of receiver.storage.base on one file.

`open_sqlite` is what the factory (`receiver.storage.open_stores`) calls; tests may call it to put
two workers on one file.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base import new_worker_id
from ._file import SQLiteFile
from .dashboard import SQLiteDashboard
from .notifications import SQLiteNotifications
from .store import LocalWakeups, SQLiteDeliveryLog, SQLiteDownloads, SQLiteHealth, SQLiteJobs, SQLitePolls
from .submissions import SQLiteSubmissions
from .tokens import SQLiteTokens

__all__ = ["DOWNLOAD_LEASE", "POLL_LEASE", "SQLiteStores", "open_sqlite"]

DOWNLOAD_LEASE = 60.0  # seconds a download claim lasts without renewal (the fetcher renews at a third)
POLL_LEASE = 60.0  # seconds a fallback poll's claim lasts (a poll is one request upstream)


@dataclass
class SQLiteStores:
    file: SQLiteFile
    deliveries: SQLiteDeliveryLog
    jobs: SQLiteJobs
    downloads: SQLiteDownloads
    polls: SQLitePolls
    health: SQLiteHealth
    dashboard: SQLiteDashboard
    wakeups: LocalWakeups
    submissions: SQLiteSubmissions
    tokens: SQLiteTokens
    notifications: SQLiteNotifications
    worker: str

    async def close(self) -> None:
        self.file.close()


def open_sqlite(
    path: str,
    *,
    exclusive: bool = False,
    readonly: bool = False,
    check: bool = False,
    create: bool = True,
    worker: str | None = None,
    lease: float = DOWNLOAD_LEASE,
    poll_lease: float = POLL_LEASE,
    notify_default: str | None = None,
    notify_lease: float | None = None,
) -> SQLiteStores:
    """Open (and, unless `readonly`, migrate) the store at `path`; StartupError (one line) if it cannot.

    `exclusive`: this process serves the file alone (the caller holds the data-dir lock): claims of
    any other worker are a previous run's, known dead. `notify_default`: RECEIVER_NOTIFY_URL, where the
    end of a job without a notify_url of its own is told (None: nowhere).
    """
    file = SQLiteFile(path, readonly=readonly, check=check, create=create, exclusive=exclusive)
    worker = worker or new_worker_id()
    wakeups = LocalWakeups()
    default = notify_default
    return SQLiteStores(
        file=file,
        deliveries=SQLiteDeliveryLog(file, wakeups, notify_default=default),
        jobs=SQLiteJobs(file, wakeups, notify_default=default),
        downloads=SQLiteDownloads(
            file, wakeups, worker=worker, lease=lease, exclusive=exclusive, notify_default=default
        ),
        polls=SQLitePolls(file, wakeups, worker=worker, lease=poll_lease, notify_default=default),
        health=SQLiteHealth(file),
        dashboard=SQLiteDashboard(file, wakeups),
        wakeups=wakeups,
        submissions=SQLiteSubmissions(file, notify_default=default),
        tokens=SQLiteTokens(file),
        notifications=SQLiteNotifications(
            file, wakeups, worker=worker, lease=notify_lease or lease, exclusive=exclusive
        ),
        worker=worker,
    )
