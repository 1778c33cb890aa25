"""`openrouter-video store ...`: commands on the receiver's stores themselves (not on one job)."""

from __future__ import annotations

import click


@click.group()
def store() -> None:
    """Operate on the receiver's stores (moving from SQLite to PostgreSQL)."""


@store.command("migrate")
@click.option(
    "--from",
    "source",
    required=True,
    metavar="sqlite:///PATH",
    help="The SQLite store to copy (its receiver.db), read-only: it is never changed or migrated.",
)
@click.option(
    "--to",
    "target",
    envvar="RECEIVER_DATABASE_URL",
    required=True,
    metavar="postgresql://...",
    help="The PostgreSQL database to copy into (env RECEIVER_DATABASE_URL); its schema is created or migrated.",
)
def migrate(source: str, target: str) -> None:
    """Copy a SQLite store (jobs, events, deliveries, download queue, submissions) into PostgreSQL.

    Idempotent: run again, it copies only the rows not there yet, never one twice (a job copied
    before is left as it is; its deliveries still pending are applied on PostgreSQL). Stop the SQLite
    receiver before the run you switch over with. Each run copies in one transaction: all, or
    nothing. The videos are not copied: they stay where the content store keeps them.

    \b
      openrouter-video store migrate --from sqlite:///var/lib/receiver/receiver.db \\
          --to postgresql://receiver@db.internal/receiver
    """
    from .storage.migrate import MigrateError, migrate_sqlite_to_postgres

    try:
        result = migrate_sqlite_to_postgres(source, target)
    except MigrateError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(result.summary())
    if result.paths_converted:
        click.echo(
            f"{result.paths_converted} output(s) recorded a local path: now the content key <job_id>/<index>.mp4 "
            "(the files stay under the data dir's videos folder; move them to the content store)"
        )
