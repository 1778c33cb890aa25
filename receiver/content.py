"""Where downloaded videos live: a small Protocol (the seam for an S3 store) and the local disk one."""

from __future__ import annotations

import os
from typing import Protocol

from openrouter_video import is_valid_job_id


class ContentStore(Protocol):
    def destination(self, job_id: str, index: int) -> str:
        """Local path the fetcher downloads output `index` of `job_id` to (atomically, via `.part`)."""
        ...

    def remove_partials(self) -> int:
        """Delete leftovers of interrupted downloads; they are never served."""
        ...


class LocalContentStore:
    """`<root>/<job_id>/<index>.mp4`; job ids are validated before they touch a path."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)

    def destination(self, job_id: str, index: int) -> str:
        if not is_valid_job_id(job_id) or not isinstance(index, int) or index < 0:
            raise ValueError(f"refusing unsafe path parts: job {job_id!r}, index {index!r}")
        path = os.path.join(self.root, job_id, f"{index}.mp4")
        if os.path.commonpath([self.root, os.path.abspath(path)]) != self.root:
            raise ValueError(f"refusing path outside the content root: {path}")
        return path

    def remove_partials(self) -> int:
        removed = 0
        for directory, _dirs, files in os.walk(self.root):
            for name in files:
                if name.endswith((".part", ".part.json")):  # a kept partial download and its note
                    os.unlink(os.path.join(directory, name))
                    removed += 1
        return removed
