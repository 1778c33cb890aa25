"""The receiver's commands for `openrouter-video`: serve, webhook test.

They reach the `openrouter-video` group through the `openrouter_video.commands` entry points, so
the client package never imports the receiver. Each is a thin wrapper over the Python API. The
records commands (`jobs`, `deliveries`, `reprocess`) are the client's own; their implementations
on the server's database are in receiver/cli_local.py.
"""

from __future__ import annotations

import json
import secrets as random_secrets
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

from openrouter_video import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, is_loopback_host, sign

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


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to bind.")
@_data_dir_option
@click.option("--no-auth", is_flag=True, help="Serve the query API without a token (loopback binds only).")
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
    if settings.api_token is None:
        if not no_auth:
            raise click.UsageError(
                "RECEIVER_API_TOKEN is not set: the query API needs a token "
                "(or bind to loopback with --no-auth for local use)"
            )
        if not is_loopback_host(host):
            raise click.UsageError(f"--no-auth is only allowed on a loopback address, not {host}")
    configure_logging(settings.log_format, settings.log_level)
    try:
        prepared = prepare(settings)
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None
    uvicorn.run(
        create_app(settings, prepared=prepared),
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        proxy_headers=bool(trusted_proxies.strip()),
        forwarded_allow_ips=trusted_proxies.strip() or None,
        timeout_graceful_shutdown=graceful_timeout,
        server_header=False,
        **uvicorn_options(settings),  # header caps and slow-client timeouts: see receiver/server.py
    )


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

    \b
    Example:
      openrouter-video webhook test https://hooks.example.com/webhooks/openrouter
    """
    signing_secret = secret.split(",")[0].strip()
    if not signing_secret:
        raise click.UsageError("the webhook secret is empty")
    job_id = f"selftest-{int(time.time())}-{random_secrets.token_hex(6)}"
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
            }
            try:
                response = http.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                click.echo(f"{name:<16} no answer: {exc}", err=True)
                sys.exit(3)
            accepted = 200 <= response.status_code < 300
            good = accepted == should_accept
            ok &= good
            verdict = "ok" if good else ("NOT REFUSED" if accepted else "NOT ACCEPTED")
            click.echo(f"{name:<16} -> {response.status_code} {verdict}  {response.text[:120]}")
    if not ok:
        click.echo("the receiver did not behave as required; check its secret and clock", err=True)
        sys.exit(3)
    click.echo(f"receiver at {url} verified signatures correctly (test job {job_id})")
