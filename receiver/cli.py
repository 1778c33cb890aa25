"""The receiver's commands for `openrouter-video`: serve, jobs, deliveries, reprocess, webhook test, prune.

They reach the `openrouter-video` group through the `openrouter_video.commands` entry points, so
the client package never imports the receiver. Each is a thin wrapper over the Python API.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import os
import secrets as random_secrets
import socket
import sqlite3
import ssl
import sys
import time
from datetime import datetime, timezone
from typing import TextIO

import click
import httpx

# The receiver's extra, imported here so that every receiver command, even one that would not reach
# them, names the missing extra (the plugin loader turns this import error into that one line).
import msgspec  # noqa: F401
import starlette  # noqa: F401
import structlog  # noqa: F401
import uvicorn  # noqa: F401

from openrouter_video import (
    ALL_STATUSES,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    WEBHOOK_PATH,
    is_loopback_host,
    sign,
)

from . import records
from ._db import MIGRATIONS, connect, migrate, schema_version
from .contract import iso, parse_time, present_job
from .export import FORMATS, export_jobs, readable
from .settings import Settings, SettingsError


def _settings(**overrides) -> Settings:
    try:
        return Settings.from_env(**overrides)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


def _data_dir_option(fn):
    return click.option(
        "--data-dir",
        envvar="RECEIVER_DATA_DIR",
        default="./data",
        show_default=True,
        help="Directory of the SQLite database and the videos (env RECEIVER_DATA_DIR).",
    )(fn)


def _open_db(data_dir: str, *, write: bool = False) -> sqlite3.Connection:
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


def _when(ts: float | None) -> str:
    return iso(ts) or "-"


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to bind (0: any free).",
)
@_data_dir_option
@click.option(
    "--no-auth",
    is_flag=True,
    help="Serve the query API without a token (loopback binds only; not with RECEIVER_API_TOKEN set).",
)
@click.option(
    "--trusted-proxies",
    envvar="RECEIVER_TRUSTED_PROXIES",
    default="127.0.0.1,::1",
    show_default=True,
    help="Comma-separated proxy addresses whose X-Forwarded-For/-Proto are believed "
    "(env RECEIVER_TRUSTED_PROXIES); empty trusts none.",
)
@click.option(
    "--graceful-timeout",
    default=30,
    show_default=True,
    type=int,
    help="Seconds in-flight deliveries get to finish on shutdown.",
)
def serve(
    host: str, port: int, data_dir: str, no_auth: bool, trusted_proxies: str, graceful_timeout: int
) -> None:
    """Run the webhook receiver and query API.

    Every start-up failure (a bad setting, a data dir it cannot use, a port it cannot bind) is one
    line and exit status non-zero; the port is bound before anything else is prepared.

    \b
    Example:
      export OPENROUTER_API_KEY=sk-or-... OPENROUTER_WEBHOOK_SECRET=whsec-...
      export RECEIVER_API_TOKEN=$(openssl rand -hex 24)
      openrouter-video serve --port 8000 --data-dir /var/lib/openrouter-video
    """

    from ._datadir import StartupError
    from .app import create_app, prepare
    from .logs import configure_logging
    from .server import uvicorn_options

    settings = _settings(data_dir=data_dir)
    if no_auth and settings.api_token is not None:
        raise click.UsageError(
            "--no-auth and RECEIVER_API_TOKEN are both given: unset RECEIVER_API_TOKEN to serve "
            "without a token (loopback only), or drop --no-auth"
        )
    if settings.api_token is None:
        if not no_auth:
            raise click.UsageError(
                "RECEIVER_API_TOKEN is not set: the query API needs a token "
                "(or bind to loopback with --no-auth for local use)"
            )
        if not is_loopback_host(host):
            raise click.UsageError(f"--no-auth is only allowed on a loopback address, not {host}")
    configure_logging(settings.log_format, settings.log_level)
    sock = _bind(host, port)
    try:
        bound_host, bound_port = sock.getsockname()[:2]
        if settings.api_token is None and not ipaddress.ip_address(bound_host).is_loopback:
            # `--host` named loopback but resolved elsewhere (a hosts file, say): still refused.
            raise click.UsageError(f"--no-auth: {host} resolved to {bound_host}, which is not loopback")
        try:
            prepared = prepare(settings)
        except StartupError as exc:
            raise click.ClickException(str(exc)) from None
    except BaseException:
        sock.close()
        raise
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    config = uvicorn.Config(
        create_app(settings, prepared=prepared, address=f"http://{shown}:{bound_port}"),
        access_log=False,
        log_level="warning",
        proxy_headers=bool(trusted_proxies.strip()),
        forwarded_allow_ips=trusted_proxies.strip() or None,
        timeout_graceful_shutdown=graceful_timeout,
        server_header=False,
        **uvicorn_options(settings),  # header caps and slow-client timeouts: see receiver/server.py
    )
    server = uvicorn.Server(config)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise click.ClickException("the receiver did not start; see the lines above")


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the data dir is touched: a port in use fails in one line,
    before anything is prepared or logged as started."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "the port is in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise click.ClickException(f"cannot listen on {host}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


@click.group()
def jobs() -> None:
    """Job records in the receiver's database."""


@jobs.command("list")
@_data_dir_option
@click.option(
    "--status",
    type=click.Choice(ALL_STATUSES),
    help="Only jobs in this status.",
)
@click.option("--model", help="Only jobs of this model.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def jobs_list(data_dir: str, status: str | None, model: str | None, limit: int, as_json: bool) -> None:
    """List jobs, newest first.

    \b
    Example:
      openrouter-video jobs list --status completed --model google/veo-3.1
    """
    with contextlib.closing(_open_db(data_dir)) as conn:
        rows, _cursor = records.list_jobs(conn, status=status, model=model, limit=limit)
    if as_json:
        click.echo(json.dumps([readable(row) for row in rows], indent=2))
        return
    if not rows:
        click.echo("no jobs")
        return
    click.echo(f"{'JOB':<44} {'STATUS':<12} {'MODEL':<28} {'CREATED':<24} SOURCE")
    for row in rows:
        click.echo(
            f"{row['id']:<44} {row['status']:<12} {(row['model'] or '-'):<28} "
            f"{_when(row['created_at']):<24} {row['source']}"
        )


@jobs.command("export")
@_data_dir_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option("--status", type=click.Choice(ALL_STATUSES), help="Only jobs in this status.")
@click.option("--model", help="Only jobs of this model.")
@click.option("--since", help="Only jobs created at or after this time (ISO 8601 or unix seconds).")
@click.option("-o", "--output", type=click.File("w"), default="-", help="File to write (default: stdout).")
def jobs_export(
    data_dir: str, fmt: str, status: str | None, model: str | None, since: str | None, output: TextIO
) -> None:
    """Export every job record (newest first) as CSV or JSON, streamed.

    \b
    Example:
      openrouter-video jobs export --format csv --since 2026-12-01 -o jobs.csv
    """
    try:
        since_ts = parse_time("since", since)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    with contextlib.closing(_open_db(data_dir)) as conn:
        count = export_jobs(conn, output, fmt, status=status, model=model, since=since_ts)
    click.echo(f"exported {count} jobs", err=True)


@jobs.command("show")
@click.argument("job_id")
@_data_dir_option
def jobs_show(job_id: str, data_dir: str) -> None:
    """Show one job: status, outputs (with file paths) and its event history, as JSON.

    \b
    Example:
      openrouter-video jobs show gen-vid-1763700000-AbCdEfGhIjKlMnOpQrSt
    """
    with contextlib.closing(_open_db(data_dir)) as conn:
        record = records.get_job(conn, job_id)
        if record is None:
            raise click.UsageError(f"no job {job_id!r} in {data_dir}")
        for output in record["outputs"]:
            output["path"] = records.output_path(conn, job_id, output["index"])
    click.echo(json.dumps(present_job(record), indent=2))


@click.command()
@_data_dir_option
@click.option("--unprocessed", is_flag=True, help="Only deliveries not applied: failed, or still pending.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def deliveries(data_dir: str, unprocessed: bool, limit: int, as_json: bool) -> None:
    """List stored webhook deliveries, newest first.

    \b
    Example:
      openrouter-video deliveries --unprocessed
    """
    with contextlib.closing(_open_db(data_dir)) as conn:
        rows = records.list_deliveries(conn, unprocessed=unprocessed, limit=limit)
    if as_json:
        click.echo(json.dumps([readable(row) for row in rows], indent=2))
        return
    if not rows:
        click.echo("no deliveries")
        return
    for row in rows:
        state = {"applied": "applied", "pending": "pending (not applied yet)"}.get(
            row["state"], f"UNPROCESSED: {row['error']}"
        )
        click.echo(f"#{row['id']:<6} {_when(row['received_at'])}  {row['idempotency_key']:<50} {state}")


@click.command()
@click.argument("delivery_ids", nargs=-1, type=int)
@_data_dir_option
def reprocess(delivery_ids: tuple[int, ...], data_dir: str) -> None:
    """Apply stored deliveries that were not applied (all of them, or the ids given).

    Failed ones (e.g. after a fix) and pending ones (the receiver was stopped with a backlog; a
    running receiver applies those itself).

    \b
    Example:
      openrouter-video reprocess          # every delivery not applied
      openrouter-video reprocess 17 18
    """
    with contextlib.closing(_open_db(data_dir, write=True)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            outcomes = records.reprocess_deliveries(conn, list(delivery_ids) or None)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    done = sum(o.applied for o in outcomes)
    click.echo(
        f"reprocessed {len(outcomes)} deliveries: {done} applied, {len(outcomes) - done} still unprocessed"
    )
    for outcome in outcomes:
        if not outcome.applied:
            click.echo(f"  #{outcome.delivery_id}: {outcome.error}")


@click.group()
def webhook() -> None:
    """Check a deployed receiver end to end."""


@webhook.command("test")
@click.argument("url")
@click.option(
    "--secret",
    envvar="OPENROUTER_WEBHOOK_SECRET",
    required=True,
    help="Signing secret (env OPENROUTER_WEBHOOK_SECRET; the first of a comma-separated list).",
)
@click.option("--insecure", is_flag=True, help="Do not verify the TLS certificate (self-signed test setups).")
@click.option("--cacert", type=click.Path(exists=True, dir_okay=False), help="CA bundle to verify TLS with.")
def webhook_test(url: str, secret: str, insecure: bool, cacert: str | None) -> None:
    """Send a signed synthetic event, then a forged and a stale one, and report the answers.

    The signed one must be accepted (2xx); the other two must be refused (401). Exit 0 only if so.
    The receiver stores the signed one as a test delivery (job id `selftest-...`): no job record is
    made. A 404 or 405 means the URL is not the receiver's webhook endpoint (exit 3).

    \b
    Example:
      openrouter-video webhook test https://hooks.example.com/webhooks/openrouter
    """
    signing_secret = secret.split(",")[0].strip()
    if not signing_secret:
        raise click.UsageError("the webhook secret is empty")
    job_id = f"{records.SELFTEST_PREFIX}{int(time.time())}-{random_secrets.token_hex(6)}"
    body = json.dumps(
        {
            "type": "video.generation.failed",
            "created_at": datetime.now(timezone.utc).isoformat(),
            "data": {
                "id": job_id,
                "status": "failed",
                "generation_id": None,
                "model": "selftest/none",
                "error": "synthetic self-test event from `openrouter-video webhook test`",
            },
        },
        separators=(",", ":"),
    ).encode()
    now = int(time.time())
    cases = [
        ("signed", sign(signing_secret, body, now), True),
        ("bad signature", sign(signing_secret + "-wrong", body, now), False),
        ("stale timestamp", sign(signing_secret, body, now - 3600), False),
    ]
    verify: bool | ssl.SSLContext = False if insecure else ssl.create_default_context(cafile=cacert)
    ok = True
    with httpx.Client(verify=verify, timeout=15.0, follow_redirects=False) as http:
        for name, signature, should_accept in cases:
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature,
                IDEMPOTENCY_HEADER: f"{job_id}-failed",
                records.SELFTEST_HEADER: "1",
            }
            try:
                response = http.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                click.echo(f"{name:<16} no answer: {exc}", err=True)
                sys.exit(3)
            if response.status_code in (404, 405):
                click.echo(
                    f"wrong URL: {url} answered {response.status_code} ({name} request); the receiver's "
                    f"webhook endpoint is POST {WEBHOOK_PATH}",
                    err=True,
                )
                sys.exit(3)
            accepted = 200 <= response.status_code < 300
            good = accepted == should_accept
            ok &= good
            verdict = "ok" if good else ("NOT REFUSED" if accepted else "NOT ACCEPTED")
            click.echo(f"{name:<16} -> {response.status_code} {verdict}  {response.text[:120]}")
    if not ok:
        click.echo("the receiver did not behave as required; check its secret and clock", err=True)
        sys.exit(3)
    click.echo(
        f"receiver at {url} verified signatures correctly (test delivery {job_id}: stored as a test, no job)"
    )


def _days_option(name: str, envvar: str, what: str):
    return click.option(
        name,
        envvar=envvar,
        type=click.FloatRange(min=0, min_open=True),
        help=f"Delete {what} older than this many days (env {envvar}; unset: kept).",
    )


@click.command()
@_data_dir_option
@_days_option("--videos-days", "RECEIVER_RETENTION_DAYS", "the video files of outputs downloaded")
@_days_option(
    "--records-days", "RECEIVER_RECORD_RETENTION_DAYS", "job records (with their files) not updated"
)
@_days_option("--deliveries-days", "RECEIVER_DELIVERY_RETENTION_DAYS", "stored webhook deliveries received")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
def prune(
    data_dir: str,
    videos_days: float | None,
    records_days: float | None,
    deliveries_days: float | None,
    dry_run: bool,
) -> None:
    """Apply the retention policy now (the running receiver also sweeps periodically).

    Video files of old outputs are deleted (the output record stays, state `deleted`, saying when and
    why); old job records go with their events and outputs; old stored deliveries go. Never a pending
    delivery, nor a job with an output still downloading or still polled.

    \b
    Example:
      RECEIVER_RETENTION_DAYS=30 openrouter-video prune --dry-run
      openrouter-video prune --videos-days 30 --records-days 365 --deliveries-days 90
    """
    from .retention import Policy, file_sizes, remove_files
    from .retention import prune as prune_records

    policy = Policy(video_days=videos_days, record_days=records_days, delivery_days=deliveries_days)
    if policy.empty:
        raise click.UsageError(
            "nothing to prune: give --videos-days, --records-days or --deliveries-days (or set "
            "RECEIVER_RETENTION_DAYS, RECEIVER_RECORD_RETENTION_DAYS, RECEIVER_DELIVERY_RETENTION_DAYS)"
        )
    with contextlib.closing(_open_db(data_dir, write=True)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            pruned = prune_records(conn, policy, time.time())
            conn.execute("ROLLBACK" if dry_run else "COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    if dry_run:
        pruned.freed_bytes = file_sizes(pruned.files)
        click.echo(f"dry run, nothing removed; would remove: {pruned.summary()}")
        return
    remove_files(pruned)
    click.echo(f"removed: {pruned.summary()}")
