"""The videos in a local folder (the embedded default): `<root>/<job_id>/<index>.mp4`.

The client's download writes a path itself (`<file>.part` beside it, resumable, fsynced, renamed
into place, keeping the free-space floor), so `sink` only names the path. Job ids and indexes are
validated before they touch a path: a key never escapes the root.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from collections.abc import Collection, Mapping

from starlette.responses import FileResponse, Response

from openrouter_video import is_valid_job_id

from .base import ContentInfo

_PARTIAL_SUFFIXES = (".part", ".part.json")  # a kept partial download and its note
_INDEX = re.compile(r"(0|[1-9][0-9]{0,8})\.mp4")


class LocalContentStore:
    def __init__(self, root: str, *, create: bool = True) -> None:
        self.root = os.path.abspath(root)
        if create:  # not for a reading command: it creates nothing
            os.makedirs(self.root, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalContentStore({self.root!r})"

    def key(self, job_id: str, index: int) -> str:
        if not is_valid_job_id(job_id) or not isinstance(index, int) or index < 0:
            raise ValueError(f"refusing unsafe content key parts: job {job_id!r}, index {index!r}")
        return f"{job_id}/{index}.mp4"

    def path(self, key: str) -> str:
        """The local file of a content key (ValueError for a key this store does not make)."""
        job_id, _, name = key.partition("/")
        if not is_valid_job_id(job_id) or not _INDEX.fullmatch(name):
            raise ValueError(f"not a content key of this store: {key!r}")
        path = os.path.join(self.root, job_id, name)
        if os.path.commonpath([self.root, os.path.abspath(path)]) != self.root:
            raise ValueError(f"refusing a path outside the content root: {path}")
        return path

    async def sink(self, key: str) -> str:
        return self.path(key)

    async def stat(self, key: str) -> ContentInfo | None:
        try:
            st = await asyncio.to_thread(os.stat, self.path(key))
        except FileNotFoundError:
            return None
        return ContentInfo(size=st.st_size)

    async def response(
        self, key: str, headers: Mapping[str, str], *, filename: str, redirect: bool | None = None
    ) -> Response | None:
        """The file with Range and HEAD as Starlette serves them; None when there is no such file.
        `redirect` is ignored: a local file has no URL of its own to send a client to."""
        path = self.path(key)
        if not await asyncio.to_thread(os.path.isfile, path):
            return None
        return FileResponse(
            path, media_type="video/mp4", filename=filename, content_disposition_type="inline"
        )

    async def delete(self, keys: list[str]) -> int:
        return await asyncio.to_thread(self._delete, keys)

    def _delete(self, keys: list[str]) -> int:
        """Remove the files and any partial of them, then their job folders once empty; bytes freed."""
        freed = 0
        folders = set()
        for key in keys:
            path = self.path(key)
            folders.add(os.path.dirname(path))
            for name in (path, *(path + suffix for suffix in _PARTIAL_SUFFIXES)):
                try:
                    size = os.stat(name).st_size
                    os.unlink(name)
                except FileNotFoundError:
                    continue
                freed += size
        for folder in folders:
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only if empty
        return freed

    async def sweep_partials(self, older_than: float | None = None, keep: Collection[str] = ()) -> int:
        return await asyncio.to_thread(self._sweep, older_than, {self.path(key) for key in keep})

    def _sweep(self, older_than: float | None, kept: set[str]) -> int:
        removed = 0
        for directory, _dirs, files in os.walk(self.root):
            for name in files:
                if not name.endswith(_PARTIAL_SUFFIXES):
                    continue
                path = os.path.join(directory, name)
                if path.removesuffix(".json").removesuffix(".part") in kept:
                    continue  # a download in progress under a live claim
                with contextlib.suppress(FileNotFoundError):
                    if older_than is None or os.stat(path).st_mtime < older_than:
                        os.unlink(path)
                        removed += 1
        return removed

    def free_bytes(self) -> int | None:
        try:
            return shutil.disk_usage(self.root).free
        except FileNotFoundError:  # a reading command's view of a data dir without videos yet
            return None

    async def close(self) -> None:
        pass
