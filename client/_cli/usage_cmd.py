"""`usage`: what the receiver's submits spent, by UTC day, model and token, and its spending caps.

Over HTTP (`GET /usage` through `ReceiverClient`), or on the server's shell from its database
(`--data-dir`, the receiver's local `usage`): the figures are the receiver's own, counted by the
rules its caps are checked with (receiver/domain/budget.py).
"""

from __future__ import annotations

from typing import Any

import click

from .format import emit_json
from .options import json_option
from .receiver_cmds import _remote, receiver, run_local, target_options

_ADJECTIVE = {"day": "daily", "month": "monthly"}


def _usd(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) else f"${value:.2f}"


def usage_text(usage: dict[str, Any]) -> str:
    """A small table of the rows, the totals, and each cap with what remains."""
    rows = usage.get("rows") or []
    header = ["DAY", "MODEL", "TOKEN", "JOBS", "ESTIMATED", "ACTUAL", "COUNTED"]
    table = [
        [
            str(r.get("day")),
            str(r.get("model") or "-"),
            str(r.get("token") or "-"),
            str(r.get("jobs")),
            _usd(r.get("estimated_usd")),
            _usd(r.get("actual_usd")),
            _usd(r.get("counted_usd")),
        ]
        for r in rows
    ]
    table.append(
        [
            "total",
            "",
            "",
            str(sum(int(r.get("jobs") or 0) for r in rows)),
            _usd(usage.get("estimated_usd")),
            _usd(usage.get("actual_usd")),
            _usd(usage.get("counted_usd")),
        ]
    )
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *table]
    ]
    lines.insert(0, f"usage from {usage.get('since')} to {usage.get('until') or 'now'} (UTC days)")
    caps = usage.get("caps") or []
    if not caps:
        lines.append("no spending cap is set (RECEIVER_BUDGET_USD_PER_DAY / _PER_MONTH)")
    for cap in caps:
        whose = f" for {cap['token']}" if cap.get("token") else ""
        lines.append(
            f"{_ADJECTIVE.get(str(cap.get('period')), cap.get('period'))} cap{whose}: {_usd(cap.get('cap_usd'))}, spent {_usd(cap.get('spent_usd'))}, "
            f"remaining {_usd(cap.get('remaining_usd'))} (from {cap.get('start')} to {cap.get('end')})"
        )
    return "\n".join(lines)


@click.command("usage")
@target_options()
@click.option("--since", help="From this time (ISO 8601 or unix seconds; default: this UTC month).")
@click.option("--until", help="Before this time (ISO 8601 or unix seconds).")
@click.option("--days", type=click.IntRange(1, 3660), help="The last N UTC days, today included.")
@json_option("Print the receiver's answer as JSON.")
@click.pass_context
def usage_cmd(
    ctx: click.Context,
    receiver_url: str | None,
    token_file: str | None,
    data_dir: str | None,
    since: str | None,
    until: str | None,
    days: int | None,
    as_json: bool,
) -> None:
    """Spend of the receiver's submits by UTC day, model and token, and its spending caps.

    An app's token sees its own spend and caps; the admin's, everyone's.

    \b
    Examples:
      openrouter-video usage --receiver https://hooks.example.com --days 7
      openrouter-video usage --since 2026-12-01 --json | jq .caps
      openrouter-video usage --data-dir /var/lib/openrouter-video     # on the server
    """
    if days is not None and (since or until):
        raise click.UsageError("give either --days or --since/--until, not both")
    if not _remote(ctx):
        run_local(ctx, "usage")
        return
    with receiver(ctx) as rx:
        usage = rx.usage(since=since, until=until, days=days)
    if as_json:
        emit_json(usage)
    else:
        click.echo(usage_text(usage))
