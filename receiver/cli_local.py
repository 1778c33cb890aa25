"""The receiver's records read (and reprocessed) from its database, on the server's own shell.

`openrouter-video jobs list|show|export`, `deliveries` and `reprocess` are the client's commands: with a
receiver URL they ask its HTTP API; with `--data-dir` (or no URL, and this extra installed) they run
these, reached through the entry point group `openrouter_video.local_commands` (the client never
imports the receiver). Each builds the same records the API answers (`present_job`, `present_delivery`:
ISO 8601 UTC times) and prints them with the client's own formatters, so both ways print alike.
The reading commands open the database read-only and never migrate it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from typing import Any, TextIO

import click

from openrouter_video import ALL_STATUSES
from openrouter_video._cli import EXIT_API
from openrouter_video._cli.records import print_deliveries, print_job, print_jobs, print_reprocessed

from . import records
from ._db import MIGRATIONS, connect, migrate, schema_version
from .contract import MAX_LIMIT, parse_time, present_delivery, present_job
from .export import FORMATS, export_jobs

DELIVERY_FILTERS = (*records.DELIVERY_STATES, records.UNPROCESSED)


class NotFound(click.ClickException):
    exit_code = EXIT_API  # as the API's 404 is over HTTP


def data_dir_option(fn: Any) -> Any:
    return click.option(
        "--data-dir",
        envvar="RECEIVER_DATA_DIR",
        default="./data",
        show_default=True,
        help="Directory of the SQLite database and the videos (env RECEIVER_DATA_DIR).",
    )(fn)


def _paging_options(fn: Any) -> Any:
    fn = click.option("--all", "follow", is_flag=True, help="Every page, following the cursors.")(fn)
    fn = click.option("--cursor", help="Start at this page (the cursor a previous listing printed).")(fn)
    return click.option("--limit", default=50, show_default=True, type=click.IntRange(1, MAX_LIMIT))(fn)


def open_db(data_dir: str, *, write: bool = False) -> sqlite3.Connection:
    """The store of `data_dir`. Reading commands never migrate (a running receiver owns that): they
    refuse a database whose schema is not the one this version reads."""
    path = os.path.join(data_dir, "receiver.db")
    if not os.path.exists(path):
        raise click.UsageError(f"no receiver database at {path} (is --data-dir / RECEIVER_DATA_DIR right?)")
    try:
        conn = connect(path, readonly=not write)
        if write:
            migrate(conn)
        elif (version := schema_version(conn)) != len(MIGRATIONS):
            conn.close()
            raise click.UsageError(
                f"the database at {path} has schema version {version}, this version reads "
                f"{len(MIGRATIONS)}: start `openrouter-video serve` on it once to migrate it"
            )
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    return conn


def _pages(fetch: Any, cursor: str | None, follow: bool) -> tuple[list[dict[str, Any]], str | None]:
    """One page from `cursor`, or every page with `follow`; a cursor not printed by us is refused."""
    try:
        rows, cursor = fetch(cursor)
        while follow and cursor:
            more, cursor = fetch(cursor)
            rows += more
    except ValueError:
        raise click.UsageError("--cursor is not one a listing printed") from None
    return rows, cursor


@click.group()
def jobs() -> None:
    """Job records in the receiver's database."""


@jobs.command("list")
@data_dir_option
@click.option("--status", type=click.Choice(ALL_STATUSES), help="Only jobs in this status.")
@click.option("--model", help="Only jobs of this model.")
@click.option("--since", help="Only jobs created at or after this time (ISO 8601 or unix seconds).")
@_paging_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def jobs_list(
    data_dir: str,
    status: str | None,
    model: str | None,
    since: str | None,
    limit: int,
    cursor: str | None,
    follow: bool,
    as_json: bool,
) -> None:
    """List jobs, newest first.

    \b
    Example:
      openrouter-video jobs list --status completed --model google/veo-3.1 --data-dir /var/lib/openrouter-video
    """
    try:
        since_ts = parse_time("since", since)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    with contextlib.closing(open_db(data_dir)) as conn:

        def fetch(at: str | None) -> tuple[list[dict[str, Any]], str | None]:
            return records.list_jobs(conn, status=status, model=model, since=since_ts, cursor=at, limit=limit)

        rows, next_cursor = _pages(fetch, cursor, follow)
    print_jobs([present_job(row) for row in rows], next_cursor, as_json=as_json)


@jobs.command("export")
@data_dir_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option("--status", type=click.Choice(ALL_STATUSES), help="Only jobs in this status.")
@click.option("--model", help="Only jobs of this model.")
@click.option("--since", help="Only jobs created at or after this time (ISO 8601 or unix seconds).")
@click.option("-o", "--output", type=click.File("w"), default="-", help="File to write (default: stdout).")
def jobs_export(
    data_dir: str, fmt: str, status: str | None, model: str | None, since: str | None, output: TextIO
) -> None:
    """Export every job record (newest first) as CSV or JSON, streamed (on the server).

    \b
    Example:
      openrouter-video jobs export --format csv --since 2026-12-01 -o jobs.csv
    """
    try:
        since_ts = parse_time("since", since)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    with contextlib.closing(open_db(data_dir)) as conn:
        count = export_jobs(conn, output, fmt, status=status, model=model, since=since_ts)
    click.echo(f"exported {count} jobs", err=True)


@jobs.command("show")
@click.argument("job_id")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
def jobs_show(job_id: str, data_dir: str, as_json: bool) -> None:
    """Show one job: status, outputs (with file paths) and its event history.

    \b
    Example:
      openrouter-video jobs show gen-vid-1763700000-AbCdEfGhIjKlMnOpQrSt --data-dir /var/lib/openrouter-video
    """
    with contextlib.closing(open_db(data_dir)) as conn:
        record = records.get_job(conn, job_id)
        if record is None:
            raise NotFound(f"no job {job_id[:100]!r} in {data_dir}")
        for output in record["outputs"]:
            output["path"] = records.output_path(conn, job_id, output["index"])
    print_job(present_job(record), as_json=as_json)


@click.command()
@data_dir_option
@click.option("--state", type=click.Choice(DELIVERY_FILTERS), help="Only deliveries in this state.")
@click.option("--unprocessed", is_flag=True, help="Only deliveries not applied: failed, or still pending.")
@_paging_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def deliveries(
    data_dir: str,
    state: str | None,
    unprocessed: bool,
    limit: int,
    cursor: str | None,
    follow: bool,
    as_json: bool,
) -> None:
    """List stored webhook deliveries, newest first.

    \b
    Example:
      openrouter-video deliveries --unprocessed --data-dir /var/lib/openrouter-video
    """
    state = records.UNPROCESSED if unprocessed else state
    with contextlib.closing(open_db(data_dir)) as conn:

        def fetch(at: str | None) -> tuple[list[dict[str, Any]], str | None]:
            return records.page_deliveries(conn, state=state, cursor=at, limit=limit)

        rows, next_cursor = _pages(fetch, cursor, follow)
    print_deliveries([present_delivery(row) for row in rows], next_cursor, as_json=as_json)


@click.command()
@click.argument("delivery_ids", nargs=-1, type=click.IntRange(min=1))
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def reprocess(delivery_ids: tuple[int, ...], data_dir: str, as_json: bool) -> None:
    """Apply stored deliveries that were not applied (all of them, or the ids given).

    Failed ones (e.g. after a fix) and pending ones (the receiver was stopped with a backlog; a
    running receiver applies those itself).

    \b
    Example:
      openrouter-video reprocess --data-dir /var/lib/openrouter-video          # every delivery not applied
      openrouter-video reprocess 17 18 --data-dir /var/lib/openrouter-video
    """
    with contextlib.closing(open_db(data_dir, write=True)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            outcomes = records.reprocess_deliveries(conn, list(delivery_ids) or None, isolate=True)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    done = sum(o.applied for o in outcomes)
    result = {
        "reprocessed": [
            {
                "id": o.delivery_id,
                "idempotency_key": o.idempotency_key,
                "job_id": o.job_id,
                "status": o.status,
                "applied": o.applied,
                "error": o.error,
            }
            for o in outcomes
        ],
        "applied": done,
        "unprocessed": len(outcomes) - done,
    }
    print_reprocessed(result, as_json=as_json)
