"""One SQLite store file, opened: the one batching writer, a read connection for the event loop and
a scan connection on a thread of its own.

Short indexed reads run on the loop (microseconds while the pages are cached); a read that may
scan (counts) runs on the scan thread, so a large table never pauses the webhook path.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog

from ..._datadir import StartupError
from ..base import StoreUnavailable
from ._db import MIGRATIONS, check_integrity, connect, migrate, schema_version
from ._writer import Writer

T = TypeVar("T")
log = structlog.get_logger("receiver.store")


class SQLiteFile:
    """`readonly`: a reading command's view (never migrates, never writes; refuses another schema).
    `create`: make the file if missing (the server); otherwise a missing file is a StartupError.
    `exclusive`: this process serves the file alone: every poll claim is a previous run's, released
    (download claims are recovered by the fetcher, `DownloadQueue.recover`)."""

    def __init__(
        self,
        path: str,
        *,
        readonly: bool = False,
        check: bool = False,
        create: bool = True,
        exclusive: bool = False,
    ) -> None:
        self.path = path
        if not create and not os.path.exists(path):
            raise StartupError(f"no receiver database at {path} (is --data-dir / RECEIVER_DATA_DIR right?)")
        self._replaced = False
        self.writer: Writer | None = None
        try:
            if readonly:
                self.read = connect(path, readonly=True)
                if (version := schema_version(self.read)) != len(MIGRATIONS):
                    self.read.close()
                    raise StartupError(
                        f"the database at {path} has schema version {version}, this version reads "
                        f"{len(MIGRATIONS)}: start `openrouter-video serve` on it once to migrate it"
                    )
            else:
                write_conn = connect(path)
                if check:
                    check_integrity(write_conn, path)
                migrate(write_conn)
                if exclusive:
                    write_conn.execute(
                        "UPDATE jobs SET poll_claimed_by = NULL, poll_lease_until = NULL "
                        "WHERE poll_claimed_by IS NOT NULL"
                    )
                self._identity = _file_identity(path)
                self.writer = Writer(write_conn, before_commit=self._check_same_file)
                self._write_conn = write_conn
                self.read = connect(path)
            self._scan_conn = connect(path, readonly=readonly)
        except sqlite3.Error as exc:
            raise StartupError(f"cannot open the database {path}: {exc}") from None
        except OSError as exc:
            raise StartupError(f"cannot open the database {path}: {exc.strerror or exc}") from None
        self._scanner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-scan")

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(conn, ...)` in the writer's next batch; its result once committed."""
        if self.writer is None:
            raise StoreUnavailable(f"the database {self.path} is open read-only")
        return await self.writer.run(fn, *args, **kwargs)

    def read_now(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A short indexed read on the loop's read connection."""
        try:
            return fn(self.read, *args, **kwargs)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"the database could not be read: {exc}") from None

    async def scan(self, fn: Callable[..., T], *args: Any) -> T:
        """A read that may scan, on the scan thread."""

        def run() -> T:
            try:
                return fn(self._scan_conn, *args)
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"the database could not be read: {exc}") from None

        return await asyncio.get_running_loop().run_in_executor(self._scanner, run)

    @property
    def writes_waiting(self) -> int:
        return self.writer.load if self.writer is not None else 0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self._write_conn.close()
        self._scanner.shutdown(wait=True)
        self._scan_conn.close()
        self.read.close()

    def _check_same_file(self) -> None:
        """Before each commit: is the file written still the file at the path? Deleted or replaced, the
        commits would go to an unlinked inode and vanish at restart, so nothing more is acknowledged."""
        try:
            same = _file_identity(self.path) == self._identity
        except OSError:
            same = False
        if not same:
            if not self._replaced:
                self._replaced = True
                log.critical(
                    "store.file_replaced",
                    path=self.path,
                    hint="the database file was deleted or replaced under the running receiver; "
                    "nothing more is acknowledged: restart it",
                )
            raise StoreUnavailable(
                f"the database file {self.path} was deleted or replaced; restart the receiver"
            )


def _file_identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino
