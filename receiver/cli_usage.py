"""`openrouter-video usage --data-dir DIR`: the usage report read from the receiver's own stores.

The client's `usage` asks a receiver over HTTP (`GET /usage`); on the server's shell (`--data-dir`,
or no RECEIVER_URL) it runs this instead, through the entry point group
`openrouter_video.local_commands`. Same report (receiver.api_usage.usage_report, as the built-in
admin sees it: every token's rows, the receiver-wide caps from the environment), printed alike.
"""

from __future__ import annotations

import json
import time

import click

from openrouter_video._cli.format import emit_json
from openrouter_video._cli.usage_cmd import usage_text

from . import contract
from .api_usage import usage_report, usage_window
from .cli_local import data_dir_option, local_settings, with_stores
from .domain.tokens import BUILTIN_ADMIN
from .storage import Stores


@click.command("usage")
@data_dir_option
@click.option("--since", help="From this time (ISO 8601 or unix seconds; default: this UTC month).")
@click.option("--until", help="Before this time (ISO 8601 or unix seconds).")
@click.option("--days", type=click.IntRange(1, 3660), help="The last N UTC days, today included.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def usage(data_dir: str, since: str | None, until: str | None, days: int | None, as_json: bool) -> None:
    """Spend by UTC day, model and token, and the spending caps, from the receiver's database.

    \b
    Example:
      openrouter-video usage --data-dir /var/lib/openrouter-video --days 7
    """
    now = time.time()
    try:
        window = usage_window(None if days is None else str(days), since, until, now)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    settings = local_settings(data_dir)

    async def report(stores: Stores) -> contract.Usage:
        return await usage_report(stores, settings, BUILTIN_ADMIN, *window, now)

    shown = json.loads(contract.encode(with_stores(data_dir, report)))
    if as_json:
        emit_json(shown)
    else:
        click.echo(usage_text(shown))
