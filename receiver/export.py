"""Job records out of the store as CSV or JSON, streamed: `openrouter-video jobs export`.

sqlite-utils reads the rows (`rows_where` builds the query, quotes the names and streams dicts), so
a million records export in constant memory. Times are ISO 8601 UTC, as everywhere else.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from typing import Any, TextIO

import sqlite_utils

from .contract import TIME_FIELDS, iso
from .records import JOB_COLUMNS

COLUMNS = [name.strip() for name in JOB_COLUMNS.split(",")]
FORMATS = ("csv", "json")


def readable(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as people and programs read it: ISO 8601 times, booleans as booleans."""
    shown = {key: iso(value) if key in TIME_FIELDS else value for key, value in row.items()}
    if "registered" in shown:
        shown["registered"] = bool(shown["registered"])
    return shown


def export_jobs(
    conn: sqlite3.Connection,
    out: TextIO,
    fmt: str,
    *,
    status: str | None = None,
    model: str | None = None,
    since: float | None = None,
) -> int:
    """Write every matching job, newest first, to `out`; return how many."""
    where, params = [], []
    for clause, value in (("status = ?", status), ("model = ?", model), ("created_at >= ?", since)):
        if value is not None:
            where.append(clause)
            params.append(value)
    rows = sqlite_utils.Database(conn)["jobs"].rows_where(
        " AND ".join(where) or None, params, order_by="created_at DESC, id DESC", select=", ".join(COLUMNS)
    )
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(readable(row))
            count += 1
        return count
    out.write("[")
    for row in rows:
        out.write(("\n" if count == 0 else ",\n") + json.dumps(readable(row)))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count
