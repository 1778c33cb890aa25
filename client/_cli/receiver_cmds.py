"""`jobs list|show`, `deliveries`, `reprocess`: the receiver's records, from anywhere.

With `--receiver URL` (env RECEIVER_URL) they query the receiver's HTTP API with `ReceiverClient`
(token: RECEIVER_API_TOKEN or `--token-file`); that needs only the client. On the server's own shell
they read its database instead: with `--data-dir` (env RECEIVER_DATA_DIR), or when no URL is set and
the receiver extra is installed. The local implementations are the receiver's (receiver/cli_local.py),
reached through the entry point group `openrouter_video.local_commands`: client/ never imports them.
Both print through `records.py`, so both look alike.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from .._exceptions import APIError, NotFoundError, OpenRouterVideoError, TransportError
from .._receiver_api import ReceiverClient
from .._types import ALL_STATUSES
from .errors import EXIT_API, one_line
from .options import json_option, stacked
from .records import print_deliveries, print_job, print_jobs, print_reprocessed

F = TypeVar("F", bound=Callable[..., Any])

LOCAL_GROUP = "openrouter_video.local_commands"
DELIVERY_FILTERS = ("pending", "failed", "applied", "unprocessed")
MAX_PAGE = 500
NOWHERE = (
    "no receiver to ask: set RECEIVER_URL (or --receiver URL) and RECEIVER_API_TOKEN to query one over HTTP, "
    "or on the server install 'openrouter-video[receiver]' and pass --data-dir"
)


class ReceiverError(click.ClickException):
    """The receiver refused or could not be reached: one line, exit 3 (as any API error)."""

    exit_code = EXIT_API


def _local_entry_points() -> Any:
    # Looked up on the package at call time, as the plugin loader does (tests may replace it).
    from . import entry_points

    return entry_points(group=LOCAL_GROUP)


def load_local(name: str) -> click.Command | str:
    """The receiver's local command `name`, or why it is not available (one line)."""
    found = [ep for ep in _local_entry_points() if ep.name == name]
    if not found:
        return "the receiver's local commands are not installed: pip install 'openrouter-video[receiver]'"
    try:
        command = found[0].load()
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("openrouter_video"):
            return f"{found[0].value} failed to load: {exc}"
        return f"the receiver's dependencies are not installed ({exc.name}): pip install 'openrouter-video[receiver]'"
    except Exception as exc:  # noqa: BLE001 - a broken install: say so in one line
        return f"{found[0].value} failed to load: {type(exc).__name__}: {exc}"
    if not isinstance(command, click.Command):
        return f"{found[0].value} is not a click command"
    return command


# -- where to ask: options and the choice between HTTP and the local database ----------------------


def target_options() -> Callable[[F], F]:
    return stacked(
        click.option(
            "--receiver",
            "receiver_url",
            envvar="RECEIVER_URL",
            metavar="URL",
            help="The receiver's root URL, queried over HTTP (env RECEIVER_URL; token in RECEIVER_API_TOKEN).",
        ),
        click.option(
            "--token-file",
            type=click.Path(exists=True, dir_okay=False),
            help="File holding the receiver's API token (instead of env RECEIVER_API_TOKEN).",
        ),
        click.option(
            "--data-dir",
            envvar="RECEIVER_DATA_DIR",
            help="On the server: read this receiver data directory instead (env RECEIVER_DATA_DIR; "
            "default ./data when no URL is set).",
        ),
    )


def paging_options(what: str) -> Callable[[F], F]:
    return stacked(
        click.option(
            "--limit",
            default=50,
            show_default=True,
            type=click.IntRange(1, MAX_PAGE),
            help=f"{what} per page.",
        ),
        click.option("--cursor", help="Start at this page (the cursor a previous listing printed)."),
        click.option("--all", "follow", is_flag=True, help="Every page, following the cursors."),
    )


_DEFAULTED = "openrouter_video.data_dir_defaulted"


def _remote(ctx: click.Context) -> bool:
    """True: ask the receiver over HTTP; False: read the local database (`data_dir` filled in)."""
    params = ctx.params
    url, data_dir = params.get("receiver_url") or None, params.get("data_dir") or None
    if url and data_dir:
        from_line = click.core.ParameterSource.COMMANDLINE
        url_typed = ctx.get_parameter_source("receiver_url") == from_line
        dir_typed = ctx.get_parameter_source("data_dir") == from_line
        if url_typed and dir_typed:
            raise click.UsageError("give either --receiver or --data-dir, not both")
        return url_typed  # what was typed beats the environment; both from it: the local database
    if url:
        return True
    if data_dir is None:  # neither: the server's own shell, if the receiver is installed here
        params["data_dir"] = "./data"
        ctx.meta[_DEFAULTED] = True
    return False


def _token(token_file: str | None) -> str | None:
    if token_file:
        with open(token_file, encoding="utf-8") as fh:
            return fh.read().strip() or None
    return os.environ.get("RECEIVER_API_TOKEN", "").strip() or None


@contextlib.contextmanager
def receiver(ctx: click.Context) -> Iterator[ReceiverClient]:
    """The HTTP client for this invocation; its errors become one line and exit 3."""
    url = ctx.params["receiver_url"]
    try:
        client = ReceiverClient(url, _token(ctx.params.get("token_file")))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        with client:
            yield client
    except NotFoundError as exc:
        raise ReceiverError(f"{one_line(exc.message)} (receiver at {client.url})") from None
    except APIError as exc:
        hint = " (check RECEIVER_API_TOKEN or --token-file)" if exc.status_code in (401, 403) else ""
        raise ReceiverError(
            f"the receiver at {client.url} answered {exc.status_code}: {one_line(exc.message)}{hint}"
        ) from None
    except TransportError as exc:
        raise ReceiverError(
            f"could not reach the receiver at {client.url}: {one_line(exc.message)}"
        ) from None
    except OpenRouterVideoError as exc:
        raise ReceiverError(one_line(exc.message)) from None


def run_local(ctx: click.Context, name: str, sub: str | None = None) -> Any:
    """Run the receiver's local command `name` (`sub` of it) with the parameters it shares with ours."""
    command = load_local(name)
    if isinstance(command, str):
        raise click.UsageError(NOWHERE if ctx.meta.get(_DEFAULTED) else command)
    if sub is not None:
        assert isinstance(command, click.Group), command
        found = command.get_command(ctx, sub)
        if found is None:
            raise click.UsageError(f"the receiver's local `{name}` has no `{sub}`")
        command = found
    names = {p.name for p in command.params}
    return ctx.invoke(command, **{k: v for k, v in ctx.params.items() if k in names})


# -- the commands ----------------------------------------------------------------------------------


class JobsGroup(click.Group):
    """`jobs`: list and show here (HTTP or local); the receiver's local-only subcommands (`export`)
    are found in its local `jobs` group when the extra is installed."""

    def _local(self) -> click.Group | None:
        command = load_local("jobs")
        return command if isinstance(command, click.Group) else None

    def list_commands(self, ctx: click.Context) -> list[str]:
        local = self._local()
        extra = local.list_commands(ctx) if local is not None else []
        return sorted({*super().list_commands(ctx), *extra})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        local = self._local()
        return local.get_command(ctx, cmd_name) if local is not None else None


@click.group("jobs", cls=JobsGroup)
def jobs_cmd() -> None:
    """Job records kept by the webhook receiver (over HTTP, or its database on the server).

    \b
    Examples:
      export RECEIVER_URL=https://hooks.example.com RECEIVER_API_TOKEN=...
      openrouter-video jobs list --status failed --since 2026-12-01
      openrouter-video jobs show gen-vid-1763700000-AbCdEfGhIjKlMnOpQrSt
    """


@jobs_cmd.command("list")
@target_options()
@click.option(
    "--status",
    type=click.Choice(ALL_STATUSES),
    help="Only jobs in this status.",
)
@click.option("--model", help="Only jobs of this model.")
@click.option("--since", help="Only jobs created at or after this time (ISO 8601 or unix seconds).")
@paging_options("Jobs")
@json_option("Print a JSON array of job records.")
@click.pass_context
def jobs_list_cmd(
    ctx: click.Context,
    receiver_url: str | None,
    token_file: str | None,
    data_dir: str | None,
    status: str | None,
    model: str | None,
    since: str | None,
    limit: int,
    cursor: str | None,
    follow: bool,
    as_json: bool,
) -> None:
    """List job records, newest first (times in ISO 8601 UTC).

    \b
    Examples:
      openrouter-video jobs list --receiver https://hooks.example.com --status completed
      openrouter-video jobs list --since 2026-12-01T00:00:00Z --all --json | jq length
      openrouter-video jobs list --data-dir /var/lib/openrouter-video     # on the server
    """
    if not _remote(ctx):
        run_local(ctx, "jobs", "list")
        return
    with receiver(ctx) as rx:
        jobs, next_cursor = rx.jobs_page(status=status, model=model, since=since, limit=limit, cursor=cursor)
        while follow and next_cursor:
            page, next_cursor = rx.jobs_page(
                status=status, model=model, since=since, limit=limit, cursor=next_cursor
            )
            jobs += page
    print_jobs(jobs, next_cursor, as_json=as_json)


@jobs_cmd.command("show")
@click.argument("job_id", metavar="JOB")
@target_options()
@json_option("Print the job record as JSON.")
@click.pass_context
def jobs_show_cmd(
    ctx: click.Context,
    job_id: str,
    receiver_url: str | None,
    token_file: str | None,
    data_dir: str | None,
    as_json: bool,
) -> None:
    """Show one job: status, model, prompt, times, cost, outputs and its event timeline.

    \b
    Examples:
      openrouter-video jobs show gen-vid-1763700000-AbCdEfGhIjKlMnOpQrSt
      openrouter-video jobs show gen-vid-1763700000-AbCdEfGhIjKlMnOpQrSt --json | jq .outputs
    """
    if not _remote(ctx):
        run_local(ctx, "jobs", "show")
        return
    with receiver(ctx) as rx:
        job = rx.job(job_id)
    print_job(job, as_json=as_json)


@click.command("deliveries")
@target_options()
@click.option("--state", type=click.Choice(DELIVERY_FILTERS), help="Only deliveries in this state.")
@click.option("--unprocessed", is_flag=True, help="Only deliveries not applied (--state unprocessed).")
@paging_options("Deliveries")
@json_option("Print a JSON array of deliveries.")
@click.pass_context
def deliveries_cmd(
    ctx: click.Context,
    receiver_url: str | None,
    token_file: str | None,
    data_dir: str | None,
    state: str | None,
    unprocessed: bool,
    limit: int,
    cursor: str | None,
    follow: bool,
    as_json: bool,
) -> None:
    """List the webhook deliveries the receiver stored, newest first (never their bodies).

    \b
    Examples:
      openrouter-video deliveries --state failed
      openrouter-video deliveries --unprocessed --json
    """
    if unprocessed:
        if state not in (None, "unprocessed"):
            raise click.UsageError("--unprocessed is --state unprocessed: give one of them")
        ctx.params["state"] = state = "unprocessed"
    if not _remote(ctx):
        run_local(ctx, "deliveries")
        return
    with receiver(ctx) as rx:
        rows, next_cursor = rx.deliveries_page(state=state, limit=limit, cursor=cursor)
        while follow and next_cursor:
            page, next_cursor = rx.deliveries_page(state=state, limit=limit, cursor=next_cursor)
            rows += page
    print_deliveries(rows, next_cursor, as_json=as_json)


@click.command("reprocess")
@click.argument("delivery_ids", nargs=-1, type=click.IntRange(min=1), metavar="[ID]...")
@target_options()
@json_option("Print the receiver's answer as JSON.")
@click.pass_context
def reprocess_cmd(
    ctx: click.Context,
    delivery_ids: tuple[int, ...],
    receiver_url: str | None,
    token_file: str | None,
    data_dir: str | None,
    as_json: bool,
) -> None:
    """Apply stored deliveries that were not applied (all of them, or the ids given).

    Failed ones (e.g. after a fix) and pending ones (a stopped receiver's backlog).

    \b
    Examples:
      openrouter-video reprocess            # every delivery not applied
      openrouter-video reprocess 17 18
    """
    if not _remote(ctx):
        run_local(ctx, "reprocess")
        return
    with receiver(ctx) as rx:
        result = rx.reprocess(list(delivery_ids) or None)
    print_reprocessed(result, as_json=as_json)


RECORDS_COMMANDS = (jobs_cmd, deliveries_cmd, reprocess_cmd)
