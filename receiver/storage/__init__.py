"""Everything that persists, behind the interfaces of `base`; `open_stores` opens the configured ones.

The app and every CLI command open their stores here, and nothing else opens a database, a bucket
or a file under the data dir:

- records: SQLite in the data dir (RECEIVER_DATABASE_URL unset), or PostgreSQL
  (`postgresql://...`, the `postgres` extra);
- content: the data dir's videos folder (RECEIVER_CONTENT_URL unset), or an S3 bucket
  (`s3://bucket/prefix`, the `s3` extra).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Protocol

from .._datadir import DataDirLock, StartupError
from ..settings import Settings
from ..settings_notify import notify_lease
from .base import (
    ContentStore,
    Dashboard,
    DeliveryLog,
    DownloadQueue,
    Health,
    Jobs,
    Notifications,
    PollQueue,
    Stores,
    StoreUnavailable,
    Submissions,
    Tokens,
    Wakeups,
)
from .local_content import LocalContentStore
from .sqlite import open_sqlite

__all__ = ["Stores", "StoreUnavailable", "assemble", "open_stores"]


class _RecordStores(Protocol):
    """What a records backend's opener returns (`open_sqlite`, `open_postgres`): all but the content."""

    @property
    def deliveries(self) -> DeliveryLog: ...
    @property
    def jobs(self) -> Jobs: ...
    @property
    def downloads(self) -> DownloadQueue: ...
    @property
    def polls(self) -> PollQueue: ...
    @property
    def health(self) -> Health: ...
    @property
    def dashboard(self) -> Dashboard: ...
    @property
    def wakeups(self) -> Wakeups: ...
    @property
    def submissions(self) -> Submissions: ...
    @property
    def tokens(self) -> Tokens: ...
    @property
    def notifications(self) -> Notifications: ...
    @property
    def worker(self) -> str: ...

    async def close(self) -> None: ...


async def open_stores(
    settings: Settings,
    *,
    exclusive: bool,
    readonly: bool = False,
    check: bool = False,
    create: bool | None = None,
    worker: str | None = None,
) -> Stores:
    """The configured stores; StartupError (one line) when they cannot be opened.

    `exclusive`: the serving process. With SQLite it takes the data dir (one serving process per
    dir, DataDirBusy otherwise), so a previous run's claims and partial downloads are known dead;
    with PostgreSQL (replicas) it only starts listening for other replicas' wakeups.
    `readonly`: a reading command (SQLite: never migrates, refuses another schema version).
    `check`: verify the SQLite file's integrity first. `create`: make a missing SQLite store
    (default: only when `exclusive`; a command refuses a data dir that has none).
    """
    closing: list[Callable[[], Awaitable[None]]] = []
    try:
        records: _RecordStores
        if settings.database_url is None:
            if exclusive:
                lock = await asyncio.to_thread(DataDirLock.acquire, settings.data_dir)
                closing.append(_release(lock))
            records = await asyncio.to_thread(
                open_sqlite,
                settings.db_path,
                exclusive=exclusive,
                readonly=readonly,
                check=check,
                create=exclusive if create is None else create,
                worker=worker,
                lease=settings.claim_lease,
                poll_lease=settings.claim_lease,
                notify_default=settings.notify_url,
                notify_lease=notify_lease(settings),
            )
        else:
            postgres = _extra("receiver.storage.postgres", "PostgreSQL store", "postgres")
            try:
                records = await postgres.open_postgres(
                    settings.database_url,
                    worker=worker,
                    listen=exclusive,
                    lease=settings.claim_lease,
                    poll_lease=settings.claim_lease,
                    notify_default=settings.notify_url,
                    notify_lease=notify_lease(settings),
                )
            except StoreUnavailable as exc:
                raise StartupError(f"cannot open the PostgreSQL store: {exc}") from None
        closing.insert(0, records.close)
        content = await _open_content(settings, create=not readonly)
        closing.insert(0, content.close)
    except BaseException:
        for close in closing:
            await close()
        raise
    return assemble(records, content, exclusive=exclusive and settings.database_url is None, closing=closing)


def assemble(
    records: _RecordStores,
    content: ContentStore,
    *,
    exclusive: bool,
    closing: list[Callable[[], Awaitable[None]]] | None = None,
) -> Stores:
    """One Stores of a records backend and a content store; `closing` defaults to closing both."""
    return Stores(
        deliveries=records.deliveries,
        jobs=records.jobs,
        downloads=records.downloads,
        polls=records.polls,
        health=records.health,
        dashboard=records.dashboard,
        wakeups=records.wakeups,
        content=content,
        submissions=records.submissions,
        tokens=records.tokens,
        notifications=records.notifications,
        worker=records.worker,
        exclusive=exclusive,
        closing=tuple(closing if closing is not None else (content.close, records.close)),
    )


async def _open_content(settings: Settings, *, create: bool) -> ContentStore:
    if settings.content_url is None:
        try:
            return LocalContentStore(settings.videos_dir, create=create)
        except OSError as exc:
            raise StartupError(
                f"cannot use the videos folder {settings.videos_dir}: {exc.strerror or exc}"
            ) from None
    s3 = _extra("receiver.storage.s3_content", "S3 content store", "s3")
    try:
        store: ContentStore = await s3.open_s3(settings.content_url)
    except ValueError as exc:
        raise StartupError(f"RECEIVER_CONTENT_URL: {exc}") from None
    except StoreUnavailable as exc:  # one line, naming no credential
        raise StartupError(f"cannot open the S3 content store: {exc}") from None
    return store


def _extra(module: str, what: str, extra: str) -> ModuleType:
    """A backend of an optional extra, imported only when configured."""
    try:
        return importlib.import_module(f"openrouter_video.{module}")
    except ImportError as exc:
        raise StartupError(
            f"{what} not available: install openrouter-video[{extra}] ({exc.name or exc} is missing)"
        ) from None


def _release(lock: DataDirLock) -> Callable[[], Awaitable[None]]:
    async def release() -> None:
        lock.release()

    return release
