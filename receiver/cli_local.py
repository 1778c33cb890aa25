"""The receiver's records read (and reprocessed) from its database, on the server's own shell.

`openrouter-video jobs list|show|export`, `deliveries` and `reprocess` are the client's commands: with a
receiver URL they ask its HTTP API; with `--data-dir` (or no URL, and this extra installed) they run
these, reached through the entry point group `openrouter_video.local_commands` (the client never
imports the receiver). Each builds the same records the API answers (`present_job`, `present_delivery`:
ISO 8601 UTC times) and prints them with the client's own formatters, so both ways print alike.
Every command opens the configured stores through `receiver.storage.open_stores` (SQLite in the
data dir, or RECEIVER_DATABASE_URL); the reading ones open them read-only and never migrate them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TextIO, TypeVar

import click

from openrouter_video import ALL_STATUSES
from openrouter_video._cli import EXIT_API
from openrouter_video._cli.records import print_deliveries, print_job, print_jobs, print_reprocessed

from ._datadir import StartupError
from .contract import MAX_LIMIT, parse_time, present_delivery, present_job, present_summary
from .domain.model import JobFilter, OutputRecord, Page
from .domain.pages import DELIVERY_STATES, UNPROCESSED
from .export import FORMATS, export_jobs
from .settings import Secret, Settings, SettingsError
from .storage import Stores, StoreUnavailable, open_stores
from .storage.base import ContentStore
from .storage.local_content import LocalContentStore

DELIVERY_FILTERS = (*DELIVERY_STATES, UNPROCESSED)
T = TypeVar("T")


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


def local_settings(data_dir: str) -> Settings:
    """The settings a command on the server's shell needs: where the stores are (the data dir, or
    RECEIVER_DATABASE_URL / RECEIVER_CONTENT_URL), not the OpenRouter key or the webhook secret."""
    try:
        return Settings.from_env(
            data_dir=data_dir, api_key=Secret(""), webhook_secrets=(Secret("unused by this command"),)
        )
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


def with_stores(
    data_dir: str, use: Callable[[Stores], Awaitable[T]], *, write: bool = False, create: bool = False
) -> T:
    """Run `use` on the data dir's stores (`create`: make a missing SQLite store). Reading commands
    never migrate (a running receiver owns that): they refuse a store whose schema is not the one
    this version reads."""
    settings = local_settings(data_dir)

    async def run() -> T:
        try:
            stores = await open_stores(settings, exclusive=False, readonly=not write, create=create)
        except StartupError as exc:
            raise click.UsageError(str(exc)) from None
        try:
            return await use(stores)
        except StoreUnavailable as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            await stores.close()

    return asyncio.run(run())


async def _pages(fetch: Callable[[str | None], Awaitable[Page]], cursor: str | None, follow: bool) -> Page:
    """One page from `cursor`, or every page with `follow`; a cursor not printed by us is refused."""
    try:
        page = await fetch(cursor)
        items, cursor = list(page.items), page.cursor
        while follow and cursor:
            page = await fetch(cursor)
            items += page.items
            cursor = page.cursor
    except ValueError:
        raise click.UsageError("--cursor is not one a listing printed") from None
    return Page(items, cursor)


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
    filters = JobFilter(status=status, model=model, since=since_ts)

    async def listing(stores: Stores) -> Page:
        return await _pages(lambda at: stores.jobs.page(filters, cursor=at, limit=limit), cursor, follow)

    page = with_stores(data_dir, listing)
    print_jobs([present_summary(job) for job in page.items], page.cursor, as_json=as_json)


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
    filters = JobFilter(status=status, model=model, since=since_ts)
    count = with_stores(data_dir, lambda stores: export_jobs(stores.jobs, output, fmt, filters))
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

    async def show(stores: Stores) -> dict[str, Any] | None:
        record = await stores.jobs.get(job_id)
        if record is None:
            return None
        shown = present_job(record)
        for output, stored in zip(shown["outputs"], record.outputs, strict=True):
            output["path"] = _local_path(stores.content, stored)
        return shown

    shown = with_stores(data_dir, show)
    if shown is None:
        raise NotFound(f"no job {job_id[:100]!r} in {data_dir}")
    print_job(shown, as_json=as_json)


def _local_path(content: ContentStore, output: OutputRecord) -> str | None:
    """Where a downloaded output is on this machine (the local store only: S3 has no path)."""
    if isinstance(content, LocalContentStore) and output.content_key and output.state == "done":
        return content.path(output.content_key)
    return None


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
    state = UNPROCESSED if unprocessed else state

    async def listing(stores: Stores) -> Page:
        return await _pages(
            lambda at: stores.deliveries.page(state=state, cursor=at, limit=limit), cursor, follow
        )

    page = with_stores(data_dir, listing)
    print_deliveries([present_delivery(row) for row in page.items], page.cursor, as_json=as_json)


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
    outcomes = with_stores(
        data_dir, lambda stores: stores.deliveries.reprocess(list(delivery_ids) or None), write=True
    )
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
