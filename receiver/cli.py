"""The receiver's commands for `openrouter-video`: serve, webhook test, prune.

They reach the `openrouter-video` group through the `openrouter_video.commands` entry points, so
the client package never imports the receiver. Each is a thin wrapper over the Python API. The
records commands (`jobs`, `deliveries`, `reprocess`) are the client's own; their implementations
on the server's database are in receiver/cli_local.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import secrets as random_secrets
import socket
import ssl
import sys
import time
from datetime import datetime, timezone

import click
import httpx

# The receiver's extra, imported here so that every receiver command, even one that would not reach
# them, names the missing extra (the plugin loader turns this import error into that one line).
import msgspec  # noqa: F401
import starlette  # noqa: F401
import structlog  # noqa: F401
import uvicorn  # noqa: F401

from openrouter_video import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    WEBHOOK_PATH,
    is_loopback_host,
    sign,
)

from .cli_local import data_dir_option, with_stores
from .domain.events import SELFTEST_HEADER, SELFTEST_PREFIX
from .settings import Settings, SettingsError


def _settings(**overrides) -> Settings:
    try:
        return Settings.from_env(**overrides)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to bind (0: any free).",
)
@data_dir_option
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
    from .app import create_app
    from .logs import configure_logging
    from .server import ReceiverServer, uvicorn_options
    from .storage import open_stores

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
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        config = uvicorn.Config(
            _app_not_made_yet,  # replaced once the stores are open (below, on the serving loop)
            access_log=False,
            log_level="warning",
            proxy_headers=bool(trusted_proxies.strip()),
            forwarded_allow_ips=trusted_proxies.strip() or None,
            timeout_graceful_shutdown=graceful_timeout,
            server_header=False,
            **uvicorn_options(settings),  # header caps and slow-client timeouts: see receiver/server.py
        )
        server = ReceiverServer(config)  # ends the dashboard's live streams first when it stops

        async def serve_on_the_stores() -> None:
            # The stores are opened on the loop that serves them (a PostgreSQL pool belongs to its loop),
            # before the app starts, so that a store that cannot be opened fails in one line.
            try:
                stores = await open_stores(settings, exclusive=True, check=True)
            except StartupError as exc:
                raise click.ClickException(str(exc)) from None
            config.app = create_app(settings, stores=stores, address=f"http://{shown}:{bound_port}")
            await server.serve(sockets=[sock])

        loop = (config.get_loop_factory() or asyncio.new_event_loop)()
        try:
            with contextlib.suppress(KeyboardInterrupt):
                loop.run_until_complete(serve_on_the_stores())
        finally:
            loop.close()
    finally:
        sock.close()
    if not server.started:
        raise click.ClickException("the receiver did not start; see the lines above")


async def _app_not_made_yet(scope: object, receive: object, send: object) -> None:
    raise RuntimeError("the receiver's app is made once its stores are open")


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
    job_id = f"{SELFTEST_PREFIX}{int(time.time())}-{random_secrets.token_hex(6)}"
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
                SELFTEST_HEADER: "1",
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
@data_dir_option
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
    from .domain.retention import Policy
    from .workers.retention import prune_once

    policy = Policy(video_days=videos_days, record_days=records_days, delivery_days=deliveries_days)
    if policy.empty:
        raise click.UsageError(
            "nothing to prune: give --videos-days, --records-days or --deliveries-days (or set "
            "RECEIVER_RETENTION_DAYS, RECEIVER_RECORD_RETENTION_DAYS, RECEIVER_DELIVERY_RETENTION_DAYS)"
        )
    pruned = with_stores(
        data_dir, lambda stores: prune_once(stores, policy, time.time(), dry_run=dry_run), write=True
    )
    if dry_run:
        click.echo(f"dry run, nothing removed; would remove: {pruned.summary()}")
        return
    click.echo(f"removed: {pruned.summary()}")
