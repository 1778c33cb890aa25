"""`openrouter-video notifications list|retry`: the outbox of signed notifications to apps, on the
receiver's own stores (the data dir's SQLite file, or RECEIVER_DATABASE_URL), as the other store
commands work. A running receiver sends what `retry` puts back within seconds (PostgreSQL: at once,
on every replica)."""

from __future__ import annotations

import json

import click

from .cli_local import NotFound, data_dir_option, with_stores
from .contract import MAX_LIMIT
from .contract_notify import present_notification
from .domain.model import Page
from .domain.notifications import NOTIFICATION_STATES
from .storage import Stores


@click.group()
def notifications() -> None:
    """Signed notifications to apps (the outbox): list them, send them again."""


@notifications.command("list")
@data_dir_option
@click.option("--state", type=click.Choice(NOTIFICATION_STATES), help="Only notifications in this state.")
@click.option("--job", "job_id", help="Only the notifications of this job.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, MAX_LIMIT))
@click.option("--cursor", help="Start at this page (the cursor a previous listing printed).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_cmd(
    data_dir: str, state: str | None, job_id: str | None, limit: int, cursor: str | None, as_json: bool
) -> None:
    """List notifications, newest first.

    \b
    Example:
      openrouter-video notifications list --state dead --data-dir /var/lib/openrouter-video
    """

    async def listing(stores: Stores) -> Page:
        try:
            return await stores.notifications.page(state=state, job_id=job_id, cursor=cursor, limit=limit)
        except ValueError:
            raise click.UsageError("--cursor is not one a listing printed") from None

    page = with_stores(data_dir, listing)
    rows = [present_notification(r) for r in page.items]
    if as_json:
        click.echo(json.dumps({"notifications": rows, "next_cursor": page.cursor}, indent=2))
        return
    if not rows:
        click.echo("no notifications")
    for row in rows:
        last = f" last: {row['last_status'] or '-'} {row['last_error'] or ''}".rstrip()
        click.echo(
            f"{row['id']}  {row['state']:<9} {row['event']:<16} job {row['job_id']}  "
            f"attempts {row['attempts']}  {row['url']}{last}"
        )
    if page.cursor:
        click.echo(f"more: --cursor {page.cursor}")


@notifications.command("retry")
@click.argument("notification_ids", nargs=-1)
@click.option("--dead", "every_dead", is_flag=True, help="Every dead notification.")
@data_dir_option
def retry_cmd(notification_ids: tuple[str, ...], every_dead: bool, data_dir: str) -> None:
    """Send notifications again: back to pending, due now, attempts reset (same webhook-id).

    \b
    Examples:
      openrouter-video notifications retry msg_0123456789abcdef01234567 --data-dir /var/lib/openrouter-video
      openrouter-video notifications retry --dead
    """
    if bool(notification_ids) == every_dead:
        raise click.UsageError("give notification ids or --dead (not both)")
    ids = list(notification_ids) or None
    retried = with_stores(data_dir, lambda stores: stores.notifications.retry(ids), write=True)
    missing = sorted(set(notification_ids) - set(retried))
    for notification_id in retried:
        click.echo(f"{notification_id}: pending, due now")
    if every_dead and not retried:
        click.echo("no dead notifications")
    if missing:
        raise NotFound(f"not retried (no such notification, or being sent right now): {', '.join(missing)}")
