"""The `openrouter-video` group: its options, its help, the built-in commands and the plugins.

Commands from other packages (the receiver's `serve`, `webhook`) are plugged in through the entry
point group `openrouter_video.commands`; client/ never imports them by name. The records commands
(`jobs`, `deliveries`, `reprocess`) are built in (receiver_cmds.py) and reach the receiver's local
implementations through a second group, `openrouter_video.local_commands`.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import click

from .catalog import model_cmd, models_cmd
from .errors import EXIT_API, run_mapped
from .jobs import download_cmd, status_cmd, wait_cmd
from .receiver_cmds import RECORDS_COMMANDS
from .simulate import simulate_cmd
from .state import ONE_SHOT_DEADLINE, PROG, CliState, pass_state
from .submit import submit_cmd
from .usage_cmd import usage_cmd

PLUGIN_GROUP = "openrouter_video.commands"

GROUP_HELP = """Generate videos with OpenRouter's asynchronous video API.

\b
Examples:
  openrouter-video models
  openrouter-video submit "a red fox in snow" --model google/veo-3.1 --duration 4 --wait -o fox.mp4
  JOB=$(openrouter-video submit "a cat surfing" --model google/veo-3.1)
  openrouter-video wait $JOB && openrouter-video download $JOB -o cat.mp4

\b
Exit codes:
  0    success
  1    the job ended failed, cancelled or expired
  2    usage or validation error (nothing was sent)
  3    API, network, response format or download error (or any other error)
  4    the job was still running at the --timeout deadline (resume: openrouter-video wait ID)
  130  interrupted (the job keeps running; the command to resume is printed)
"""

BUILTIN_COMMANDS = (
    models_cmd,
    model_cmd,
    submit_cmd,
    status_cmd,
    wait_cmd,
    download_cmd,
    simulate_cmd,
    *RECORDS_COMMANDS,  # jobs, deliveries, reprocess: over HTTP, or the receiver's local implementations
    usage_cmd,  # the receiver's spend and caps, over HTTP
)
# Commands where SIGTERM means "stop, like Ctrl-C" (with the resume hint): not the servers.
INTERRUPTIBLE_COMMANDS = frozenset(
    str(c.name)
    for c in (
        models_cmd,
        model_cmd,
        submit_cmd,
        status_cmd,
        wait_cmd,
        download_cmd,
        *RECORDS_COMMANDS,
        usage_cmd,
    )
)


class PluginLoadError(click.ClickException):
    exit_code = EXIT_API


def _plugin_entry_points() -> Iterable[Any]:
    # Looked up on the package at call time: `openrouter_video._cli.entry_points` is the one seam to replace
    # (tests install fake plugins through it).
    from . import entry_points

    return entry_points(group=PLUGIN_GROUP)


def _missing_dependency(target: str, exc: ModuleNotFoundError) -> str:
    """Our own receiver's commands live behind an extra: name it rather than the import error."""
    if target.startswith("openrouter_video.receiver") and not (exc.name or "").startswith("openrouter_video"):
        return (
            f"it needs the receiver's dependencies ({exc.name} is not installed): "
            "pip install 'openrouter-video[receiver]'"
        )
    return f"plugin {target} failed to load: {type(exc).__name__}: {exc}"


class VideoGroup(click.Group):
    """The top-level group: plugin commands from entry points, and the exit code mapping in `main`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugins_loaded = False
        self.plugin_errors: dict[str, str] = {}

    # Entry points are loaded on first use rather than at import, so a plugin module may itself import
    # `openrouter_video._cli` (for helpers) without a circular import.
    def load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        try:
            found = _plugin_entry_points()
        except Exception as exc:  # noqa: BLE001 - broken metadata must not break the built-in commands
            self.plugin_errors["*"] = f"{type(exc).__name__}: {exc}"
            return
        for ep in found:
            if ep.name in self.commands:
                continue  # plugins never shadow a built-in command (or an earlier plugin)
            try:
                command = ep.load()
            except ModuleNotFoundError as exc:
                self.plugin_errors[ep.name] = _missing_dependency(ep.value, exc)
                continue
            except Exception as exc:  # noqa: BLE001 - any import failure: remember it, keep going
                self.plugin_errors[ep.name] = f"plugin {ep.value} failed to load: {type(exc).__name__}: {exc}"
                continue
            if not isinstance(command, click.Command):
                self.plugin_errors[ep.name] = f"plugin {ep.value} is not a click command"
                continue
            self.add_command(command, name=ep.name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.load_plugins()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self.load_plugins()
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self.plugin_errors:
            raise PluginLoadError(f"command {cmd_name!r} is unavailable: {self.plugin_errors[cmd_name]}")
        return command

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        state = extra.pop("obj", None)
        if not isinstance(state, CliState):
            state = CliState()
        code = run_mapped(
            lambda: super(VideoGroup, self).main(
                args, prog_name or PROG, complete_var, standalone_mode=False, obj=state, **extra
            ),
            state,
        )
        sys.exit(code)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (kill, a CI timeout) is handled as Ctrl-C: the resume hint and exit 130.

    Only for the client's own commands: servers (`simulate`, the receiver's `serve`) keep their
    own SIGTERM handling (a graceful shutdown)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.group(cls=VideoGroup, help=GROUP_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--api-key", envvar="OPENROUTER_API_KEY", show_envvar=True, default=None, help="OpenRouter API key."
)
@click.option(
    "--base-url",
    envvar="OPENROUTER_BASE_URL",
    show_envvar=True,
    default=None,
    help="API base URL (default https://openrouter.ai/api/v1).",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0.1),
    default=None,
    metavar="SECONDS",
    help=f"Overall time limit of models, model and status, retries included (default {ONE_SHOT_DEADLINE:g}).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log HTTP requests and show tracebacks on errors.")
@click.version_option(package_name="openrouter-video", prog_name=PROG)
@pass_state
def cli(
    state: CliState, api_key: str | None, base_url: str | None, deadline: float | None, verbose: bool
) -> None:
    state.api_key = api_key or None
    state.base_url = base_url or None
    state.deadline = deadline
    state.verbose = verbose
    ctx = click.get_current_context()
    if ctx.invoked_subcommand in INTERRUPTIBLE_COMMANDS:
        ctx.with_resource(_sigterm_as_interrupt())
    if verbose:
        _log_to_stderr(ctx)


for _command in BUILTIN_COMMANDS:
    cli.add_command(_command)


def _log_to_stderr(ctx: click.Context) -> None:
    """-v: log the client's HTTP requests to stderr for this invocation (undone when it ends)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    for name in ("httpx", "client"):
        logger = logging.getLogger(name)
        previous = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)

        def undo(logger: logging.Logger = logger, previous: int = previous) -> None:
            logger.removeHandler(handler)
            logger.setLevel(previous)

        ctx.call_on_close(undo)


def main(argv: list[str] | None = None) -> None:
    """Console script entry point (`openrouter-video`)."""
    cli.main(args=argv, prog_name=PROG)
