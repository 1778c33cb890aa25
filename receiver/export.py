"""Job records out of the store as CSV or JSON, streamed: `openrouter-video jobs export`.

The records are read a page at a time (`Jobs.page`, keyset pagination), so a million of them export
in constant memory on any backend. Times are ISO 8601 UTC, as everywhere else.
"""

from __future__ import annotations

import csv
import json
from typing import TextIO

from .contract import JobSummary, present_summary
from .domain.model import JobFilter
from .storage.base import Jobs

COLUMNS = list(JobSummary.__struct_fields__)
FORMATS = ("csv", "json")
PAGE = 500


async def export_jobs(jobs: Jobs, out: TextIO, fmt: str, filters: JobFilter) -> int:
    """Write every matching job, newest first, to `out`; return how many."""
    writer = csv.DictWriter(out, fieldnames=COLUMNS) if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    else:
        out.write("[")
    count = 0
    cursor: str | None = None
    while True:
        page = await jobs.page(filters, cursor=cursor, limit=PAGE)
        for job in page.items:
            row = present_summary(job)
            if writer is not None:
                writer.writerow(row)
            else:
                out.write(("\n" if count == 0 else ",\n") + json.dumps(row))
            count += 1
        if page.cursor is None:
            break
        cursor = page.cursor
    if writer is None:
        out.write("\n]\n" if count else "]\n")
    return count
