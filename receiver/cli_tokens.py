"""`openrouter-video tokens create|list|revoke`: named API tokens for apps, on the server's shell.

They open the configured stores as the other local commands do (the data dir's SQLite file, or
RECEIVER_DATABASE_URL), so they work beside a running receiver. A token is shown once, at create; the
store keeps only its SHA-256. Roles and what a token sees: receiver/domain/tokens.py.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import click

from .cli_local import data_dir_option, with_stores
from .domain.tokens import ROLES, TokenRecord, check_name, new_notify_secret, new_token, token_hash
from .storage import Stores
from .storage.gateway import TokenExists

_USD = click.FloatRange(min=0, min_open=True)


@click.group()
def tokens() -> None:
    """Named API tokens for apps (roles read, submit, admin); RECEIVER_API_TOKEN stays the admin's."""


@tokens.command("create")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES), help="What the token may do.")
@click.option("--budget-day", type=_USD, metavar="USD", help="This token's own daily spending cap (UTC day).")
@click.option("--budget-month", type=_USD, metavar="USD", help="This token's own monthly spending cap.")
@data_dir_option
def create(name: str, role: str, budget_day: float | None, budget_month: float | None, data_dir: str) -> None:
    """Create a token and print it once, with its notification signing secret.

    A `read` token may read its own jobs, a `submit` token also submit (POST /jobs); both see only
    their own jobs. An `admin` token may do everything, as RECEIVER_API_TOKEN does.

    \b
    Example:
      openrouter-video tokens create web-backend --role submit --budget-day 20 --data-dir /var/lib/openrouter-video
    """
    try:
        check_name(name)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    token = new_token()
    record = TokenRecord(
        name=name,
        role=role,  # type: ignore[arg-type]  # click.Choice(ROLES)
        token_hash=token_hash(token),
        notify_secret=new_notify_secret(),
        created_at=time.time(),
        budget_usd_per_day=budget_day,
        budget_usd_per_month=budget_month,
    )

    async def store(stores: Stores) -> None:
        await stores.tokens.create(record)

    try:
        with_stores(data_dir, store, write=True, create=True)  # before the first `serve` too
    except TokenExists:
        raise click.ClickException(
            f"a token named {name!r} exists already (names are never reused; pick another)"
        ) from None
    click.echo(f"token {name} (role {role}) created")
    click.echo(f"token:         {token}")
    click.echo(f"notify secret: {record.notify_secret}")
    click.echo("Store both now: they are not shown again (only the token's hash is kept).")


@tokens.command("list")
@data_dir_option
def list_tokens(data_dir: str) -> None:
    """List the named tokens: name, role, caps, created, last used, revoked (never a token or its
    hash). Last used is to within a few seconds (each receiver process notes it once per 5 s).

    \b
    Example:
      openrouter-video tokens list --data-dir /var/lib/openrouter-video
    """

    async def every(stores: Stores) -> list[TokenRecord]:
        return await stores.tokens.list()

    found = with_stores(data_dir, every)
    if not found:
        click.echo("no named tokens (create one: openrouter-video tokens create NAME --role submit)")
        return
    header = ("NAME", "ROLE", "DAY CAP", "MONTH CAP", "CREATED", "LAST USED", "REVOKED")
    rows = [
        (
            t.name,
            t.role,
            _usd(t.budget_usd_per_day),
            _usd(t.budget_usd_per_month),
            _when(t.created_at),
            _when(t.last_used_at),
            _when(t.revoked_at),
        )
        for t in found
    ]
    widths = [max(len(line[i]) for line in (header, *rows)) for i in range(len(header))]
    for line in (header, *rows):
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


@tokens.command("revoke")
@click.argument("name")
@data_dir_option
def revoke(name: str, data_dir: str) -> None:
    """Revoke a token: refused from then on (a running receiver may accept it for up to 5 more
    seconds, its cache), and its dashboard sessions end.

    \b
    Example:
      openrouter-video tokens revoke web-backend --data-dir /var/lib/openrouter-video
    """

    async def revoke_it(stores: Stores) -> tuple[bool, TokenRecord | None]:
        return await stores.tokens.revoke(name, time.time()), await stores.tokens.get(name)

    done, record = with_stores(data_dir, revoke_it, write=True)
    if record is None:
        raise click.ClickException(f"no token named {name[:80]!r} (see: openrouter-video tokens list)")
    if not done:
        click.echo(f"token {name} was revoked already, at {_when(record.revoked_at)}")
        return
    click.echo(f"token {name} revoked")


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:.2f}"


def _when(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
