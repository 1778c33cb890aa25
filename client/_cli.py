"""`openrouter-video`: a thin command line over `OpenRouterVideo`.

Every error is mapped to an exit code in exactly one place, `VideoGroup.main`. Commands from other
packages (the receiver's `serve`, `jobs`, ...) are plugged in through the entry point group
`openrouter_video.commands`; this module never imports them by name.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import IO, Any

import click
import httpx

from ._base import default_dest, finish
from ._client import OpenRouterVideo
from ._exceptions import (
    APIError,
    DownloadError,
    JobNotFinished,
    JobUnsuccessful,
    OpenRouterVideoError,
    ResponseFormatError,
    SubmissionOutcomeUnknown,
    TransportError,
    ValidationError,
)
from ._types import DownloadResult, VideoJob, VideoModel
from ._validation import normalize_model_id

PLUGIN_GROUP = "openrouter_video.commands"
PROG = "openrouter-video"

EXIT_OK = 0
EXIT_JOB_UNSUCCESSFUL = 1
EXIT_USAGE = 2
EXIT_API = 3
EXIT_STILL_RUNNING = 4
EXIT_INTERRUPTED = 130

RECEIVER_WEBHOOK_PATH = "/webhooks/openrouter"
RECEIVER_TIMEOUT = 10.0


# -- shared state and the one error mapping ------------------------------------------------------


@dataclass
class CliState:
    """What the group options configured, and what the error mapping needs to know afterwards."""

    api_key: str | None = None
    base_url: str | None = None
    verbose: bool = False
    job_id: str | None = None  # the job a command is working on, for resume advice
    resume: str | None = None  # the command that picks the work up again
    submitting: bool = False  # a submit request is in flight (its outcome unknown if interrupted)
    submitted: bool = False  # this invocation created (and pays for) `job_id`
    _client: OpenRouterVideo | None = field(default=None, repr=False)

    def client(self) -> OpenRouterVideo:
        if self._client is None:
            self._client = OpenRouterVideo(api_key=self.api_key, base_url=self.base_url)
            click.get_current_context().call_on_close(self._client.close)
        return self._client

    def working_on(self, job_id: str, resume: str) -> None:
        self.job_id = job_id
        self.resume = resume


class PluginLoadError(click.ClickException):
    exit_code = EXIT_API


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def exit_code_for(error: BaseException) -> int:
    """The documented exit code of an exception (see the group help)."""
    if isinstance(error, JobUnsuccessful):
        return EXIT_JOB_UNSUCCESSFUL
    if isinstance(error, (ValidationError, click.UsageError)):
        return EXIT_USAGE
    if isinstance(error, JobNotFinished):
        return EXIT_STILL_RUNNING
    if isinstance(error, click.ClickException):
        return error.exit_code
    return EXIT_API


def error_line(error: BaseException) -> str:
    """The single `error: ...` line shown for an exception."""
    if isinstance(error, click.UsageError):
        hint = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
        return f"error: {_one_line(error.format_message())}{hint}"
    if isinstance(error, click.ClickException):
        return f"error: {_one_line(error.format_message())}"
    if isinstance(error, JobNotFinished):
        return f"error: {_one_line(error.message)}; resume with: {PROG} wait {error.job_id}"
    if isinstance(error, SubmissionOutcomeUnknown):
        return f"error: submission outcome unknown: {_one_line(error.message)}"
    if isinstance(error, JobUnsuccessful):
        return f"error: {_one_line(error.message)}"
    if isinstance(error, APIError):
        hint = ""
        if error.status_code == 401:
            hint = " (check --api-key / OPENROUTER_API_KEY)"
        elif error.status_code == 402:
            hint = " (add credits at https://openrouter.ai/settings/credits)"
        return f"error: {_one_line(str(error))}{hint}"
    if isinstance(error, TransportError):
        return f"error: could not reach the API: {_one_line(error.message)}"
    if isinstance(error, (ResponseFormatError, DownloadError, ValidationError, OpenRouterVideoError)):
        return f"error: {_one_line(error.message)}"
    if isinstance(error, OSError):
        return f"error: {_one_line(str(error))}"
    return f"error: unexpected {type(error).__name__}: {_one_line(str(error))} (run with -v for a traceback)"


class VideoGroup(click.Group):
    """The top-level group: plugin commands from entry points, and the exit code mapping in `main`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugins_loaded = False
        self.plugin_errors: dict[str, str] = {}

    # Entry points are loaded on first use rather than at import, so a plugin module may itself import
    # `client._cli` (for helpers) without a circular import.
    def load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        try:
            found: Iterable[Any] = entry_points(group=PLUGIN_GROUP)
        except Exception as exc:  # noqa: BLE001 - broken metadata must not break the built-in commands
            self.plugin_errors["*"] = f"{type(exc).__name__}: {exc}"
            return
        for ep in found:
            if ep.name in self.commands:
                continue  # plugins never shadow a built-in command (or an earlier plugin)
            try:
                command = ep.load()
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


def run_mapped(call: Any, state: CliState) -> int:
    """Run the command line and turn its outcome into an exit code. The only error mapping."""
    try:
        result = call()
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort as exc:
        if not isinstance(exc.__cause__, KeyboardInterrupt) and exc.__cause__ is not None:
            click.echo("error: aborted", err=True)
            return EXIT_API
        return _interrupted(state)
    except KeyboardInterrupt:
        return _interrupted(state)
    except BrokenPipeError:
        return EXIT_API
    except Exception as exc:  # noqa: BLE001 - this is the one place every error becomes an exit code
        if state.verbose:
            traceback.print_exception(exc, file=sys.stderr)
        line = error_line(exc)
        if state.submitted and state.job_id and not isinstance(exc, (JobNotFinished, JobUnsuccessful)):
            line += f" [job {state.job_id} was created; resume with: {state.resume}]"
        click.echo(line, err=True)
        return exit_code_for(exc)
    return result if isinstance(result, int) else EXIT_OK


def _interrupted(state: CliState) -> int:
    if state.job_id:
        click.echo(
            f"interrupted: job {state.job_id} keeps running upstream; resume with: "
            f"{state.resume or f'{PROG} wait {state.job_id}'}",
            err=True,
        )
    elif state.submitting:
        click.echo(
            "interrupted during submit: a job may or may not have been created; check your OpenRouter "
            "activity before submitting again",
            err=True,
        )
    else:
        click.echo("interrupted", err=True)
    return EXIT_INTERRUPTED


# -- live display ----------------------------------------------------------------------------------


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _fmt_elapsed(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s"


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


class StatusDisplay:
    """A job's status with elapsed time, on stderr.

    On a terminal one line is redrawn in place (ticking every half second); otherwise one line is
    written per status change, so logs stay readable.
    """

    def __init__(
        self, job_id: str, stream: IO[str] | None = None, tty: bool | None = None, tick: float = 0.5
    ) -> None:
        self.job_id = job_id
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.tick = tick
        self.status = "submitted"
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = 0

    def __enter__(self) -> StatusDisplay:
        if self.tty:
            self._draw()
            self._thread = threading.Thread(target=self._run, name="status-line", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def line(self) -> str:
        return f"job {self.job_id}: {self.status} ({_fmt_elapsed(time.monotonic() - self.started)})"

    def update(self, job: VideoJob, elapsed: float | None = None) -> None:
        with self._lock:
            self.status = job.status
            if self.tty:
                self._draw_locked()
            else:
                self.stream.write(self.line() + "\n")
                self.stream.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            self._draw()

    def _draw(self) -> None:
        with self._lock:
            self._draw_locked()

    def _draw_locked(self) -> None:
        text = self.line()
        pad = max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            with self._lock:
                self._draw_locked()
                self.stream.write("\n")
                self.stream.flush()


class DownloadProgress:
    """Bytes, percentage and speed of a download, redrawn in place on a terminal (silent otherwise)."""

    def __init__(
        self, label: str, stream: IO[str] | None = None, tty: bool | None = None, min_interval: float = 0.1
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.min_interval = min_interval
        self.started = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def __call__(self, written: int, total: int | None) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if now - self._last < self.min_interval and (total is None or written < total):
            return
        self._last = now
        self._drawn = True
        speed = written / max(now - self.started, 1e-6)
        if total:
            fraction = min(1.0, written / total)
            filled = int(fraction * 30)
            bar = "#" * filled + "-" * (30 - filled)
            text = f"{self.label} [{bar}] {fraction:4.0%} {_fmt_bytes(written)}/{_fmt_bytes(total)}"
        else:
            text = f"{self.label} {_fmt_bytes(written)}"
        self.stream.write(f"\r{text} {_fmt_bytes(speed)}/s ")
        self.stream.flush()

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


# -- output helpers --------------------------------------------------------------------------------


def job_record(job: VideoJob, **extra: Any) -> dict[str, Any]:
    """The machine-readable form of a job: OpenRouter's own fields, plus ours."""
    record = dict(job.raw)
    record.setdefault("id", job.id)
    record.setdefault("status", job.status)
    record.update(extra)
    return record


def download_record(result: DownloadResult) -> dict[str, Any]:
    return {
        "path": result.path,
        "bytes": result.bytes,
        "sha256": result.sha256,
        "content_type": result.content_type,
    }


def emit_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=False, default=str))


def _list(values: Iterable[Any] | None, *, sort: bool = False) -> str:
    if values is None:
        return "?"
    items = sorted(values) if sort else list(values)
    return ",".join(str(v) for v in items) if items else "-"


def _flag(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def _when(unix: int | None) -> str:
    if unix is None:
        return "-"
    try:
        stamp = _dt.datetime.fromtimestamp(unix, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return str(unix)
    return f"{stamp} ({unix})"


def describe_job(job: VideoJob) -> str:
    rows: list[tuple[str, str]] = [("id", job.id), ("status", job.status)]
    if job.model:
        rows.append(("model", job.model))
    if job.generation_id:
        rows.append(("generation_id", job.generation_id))
    if job.error:
        rows.append(("error", job.error))
    if job.status == "completed":
        rows.append(("outputs", str(job.output_count)))
    if job.usage is not None:
        cost = "unknown" if job.usage.cost is None else f"${job.usage.cost:.4f}"
        rows.append(("cost", f"{cost} (byok: {_flag(job.usage.is_byok)})"))
    if job.expires_at is not None:
        rows.append(("expires_at", _when(job.expires_at)))
    width = max(len(k) for k, _ in rows) + 1
    return "\n".join(f"{(k + ':').ljust(width)} {v}" for k, v in rows)


def describe_model(model: VideoModel) -> str:
    rows: list[tuple[str, str]] = [
        ("id", model.id),
        ("name", model.name or "-"),
        ("canonical_slug", model.canonical_slug or "-"),
        ("created", _when(model.created)),
        ("hugging_face_id", model.hugging_face_id or "-"),
        ("durations", _list(model.supported_durations, sort=True)),
        ("resolutions", _list(model.supported_resolutions)),
        ("aspect_ratios", _list(model.supported_aspect_ratios)),
        ("sizes", _list(model.supported_sizes)),
        ("frame_images", _list(model.supported_frame_images)),
        ("audio", _flag(model.generate_audio)),
        ("seed", _flag(model.seed)),
        (
            "upscale_factor",
            "-"
            if model.upscale_factor is None
            else ", ".join(f"{k}={v}" for k, v in model.upscale_factor.items()),
        ),
        ("creativity", _list(model.creativity) if model.creativity is not None else "-"),
        ("passthrough", _list(model.allowed_passthrough_parameters)),
    ]
    if model.pricing_skus:
        rows.extend((f"price {sku}", price) for sku, price in sorted(model.pricing_skus.items()))
    else:
        rows.append(("pricing", "-"))
    width = max(len(k) for k, _ in rows) + 1
    text = "\n".join(f"{(k + ':').ljust(width)} {v}" for k, v in rows)
    if model.description:
        text += f"\n\n{model.description}"
    return text


def print_download(result: DownloadResult) -> None:
    click.echo(f"{result.path}\t{result.bytes} bytes\tsha256 {result.sha256}")


def parse_provider_options(values: Iterable[str]) -> dict[str, dict[str, Any]] | None:
    """`SLUG.KEY=VALUE` pairs → `{slug: {"parameters": {key: value}}}`; VALUE is JSON when it parses."""
    options: dict[str, dict[str, Any]] = {}
    for item in values:
        left, sep, raw = item.partition("=")
        slug, dot, key = left.partition(".")
        if not sep or not dot or not slug.strip() or not key.strip():
            raise click.BadParameter(
                f"{item!r} is not SLUG.KEY=VALUE, e.g. google-vertex.negativePrompt=blurry",
                param_hint="'--provider-option'",
            )
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        options.setdefault(slug.strip(), {"parameters": {}})["parameters"][key.strip()] = value
    return options or None


def register_with_receiver(job: VideoJob, model: str, prompt: str | None) -> None:
    """Tell the webhook receiver about a new job (`RECEIVER_URL`, `RECEIVER_API_TOKEN`). Warns on failure."""
    base = os.environ.get("RECEIVER_URL", "").strip()
    token = os.environ.get("RECEIVER_API_TOKEN", "").strip()
    if not base or not token:
        return
    url = base.rstrip("/") + "/jobs"
    try:
        response = httpx.post(
            url,
            json={"id": job.id, "model": model, "prompt": prompt},
            headers={"Authorization": f"Bearer {token}"},
            timeout=RECEIVER_TIMEOUT,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        problem = f"{type(exc).__name__}: {exc}"
    else:
        if response.status_code < 300:
            return
        problem = f"HTTP {response.status_code} {_one_line(response.text)[:200]}"
    click.echo(
        f"warning: could not register job {job.id} with the receiver at {url} ({_one_line(problem)}); "
        f"the job exists and is paid for - keep its id: {job.id}",
        err=True,
    )


def receiver_callback_url() -> str | None:
    public = os.environ.get("RECEIVER_PUBLIC_URL", "").strip()
    return public.rstrip("/") + RECEIVER_WEBHOOK_PATH if public else None


def wait_with_display(
    state: CliState, api: OpenRouterVideo, job: VideoJob | str, *, timeout: float, poll_interval: float
) -> VideoJob:
    """Wait for a job with a live status line; returns the terminal job (unsuccessful ones too)."""
    job_id = job.id if isinstance(job, VideoJob) else job
    state.working_on(job_id, f"{PROG} wait {job_id}")
    with StatusDisplay(job_id) as display:
        return api.wait(
            job,
            timeout=timeout,
            first_interval=poll_interval,
            on_status=display.update,
            raise_on_failure=False,
        )


def download_with_progress(
    state: CliState, api: OpenRouterVideo, job: VideoJob | str, *, index: int, dest: str | None
) -> DownloadResult:
    job_id = job.id if isinstance(job, VideoJob) else job
    state.working_on(
        job_id,
        f"{PROG} download {job_id}"
        + (f" --index {index}" if index else "")
        + (f" -o {dest}" if dest else ""),
    )
    target = dest or default_dest(job_id, index)
    progress = DownloadProgress(f"downloading {os.path.basename(target)}")
    try:
        return api.download(job, index, target, progress=progress)
    finally:
        progress.finish()


def raise_if_unsuccessful(job: VideoJob) -> None:
    finish(job, raise_on_failure=True)


# -- the commands ----------------------------------------------------------------------------------

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

pass_state = click.make_pass_decorator(CliState, ensure=True)


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
@click.option("-v", "--verbose", is_flag=True, help="Log HTTP requests and show tracebacks on errors.")
@click.version_option(package_name="openrouter-video", prog_name=PROG)
@pass_state
def cli(state: CliState, api_key: str | None, base_url: str | None, verbose: bool) -> None:
    state.api_key = api_key or None
    state.base_url = base_url or None
    state.verbose = verbose
    if verbose:
        _log_to_stderr(click.get_current_context())


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


@cli.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
@pass_state
def models_cmd(state: CliState, as_json: bool) -> None:
    """List the video models and what each supports.

    \b
    Examples:
      openrouter-video models
      openrouter-video models --json | jq -r '.[].id'
    """
    models = sorted(state.client().models(), key=lambda m: m.id)
    if as_json:
        emit_json([m.raw for m in models])
        return
    rows = [
        [
            m.id,
            _list(m.supported_durations, sort=True),
            _list(m.supported_resolutions),
            _list(m.supported_aspect_ratios),
            _flag(m.generate_audio),
            _flag(m.seed),
        ]
        for m in models
    ]
    click.echo(_table(["ID", "DURATIONS", "RESOLUTIONS", "ASPECT RATIOS", "AUDIO", "SEED"], rows))


@cli.command("model")
@click.argument("model_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the catalog entry as JSON.")
@pass_state
def model_cmd(state: CliState, model_id: str, as_json: bool) -> None:
    """Show everything the catalog says about one model.

    \b
    Examples:
      openrouter-video model google/veo-3.1
      openrouter-video model google/veo-3.1 --json
    """
    model = state.client().model(model_id)
    if as_json:
        emit_json(model.raw)
    else:
        click.echo(describe_model(model))


@cli.command("submit")
@click.argument("prompt")
@click.option("--model", "-m", required=True, help="Model id, e.g. google/veo-3.1.")
@click.option("--duration", type=int, help="Seconds.")
@click.option("--resolution", help="e.g. 720p, 1080p, 4K.")
@click.option("--aspect-ratio", help="e.g. 16:9, 9:16.")
@click.option("--size", help="WIDTHxHEIGHT, e.g. 1280x720.")
@click.option("--seed", type=int)
@click.option("--audio/--no-audio", default=None, help="Generate audio (default: the model's default).")
@click.option(
    "--callback-url", help="Webhook URL for this job (default: $RECEIVER_PUBLIC_URL/webhooks/openrouter)."
)
@click.option("--first-frame", metavar="PATH|URL", help="Image for the first frame.")
@click.option("--last-frame", metavar="PATH|URL", help="Image for the last frame.")
@click.option(
    "--reference", "references", multiple=True, metavar="PATH|URL", help="Reference image (repeatable)."
)
@click.option(
    "--provider-option",
    "provider_option",
    multiple=True,
    metavar="SLUG.KEY=VALUE",
    help="Provider passthrough option (repeatable); VALUE is JSON if it parses, else text.",
)
@click.option("--upscale-factor", type=float, help="Upscaling models only.")
@click.option("--creativity", type=int, help="Upscaling models only.")
@click.option("--previous-job", help="Continue a completed job (models that support it).")
@click.option("--session-id", help="Observability grouping id.")
@click.option("--no-validate", is_flag=True, help="Skip the client-side check against the model catalog.")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the job, then download the video.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=1200.0,
    show_default=True,
    help="With --wait: seconds to wait before giving up (the job keeps running).",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.01),
    default=2.0,
    show_default=True,
    help="With --wait: first polling interval in seconds (it grows up to 30).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="With --wait: file to write (default <job id>.mp4).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
@pass_state
def submit_cmd(
    state: CliState,
    prompt: str,
    model: str,
    duration: int | None,
    resolution: str | None,
    aspect_ratio: str | None,
    size: str | None,
    seed: int | None,
    audio: bool | None,
    callback_url: str | None,
    first_frame: str | None,
    last_frame: str | None,
    references: tuple[str, ...],
    provider_option: tuple[str, ...],
    upscale_factor: float | None,
    creativity: int | None,
    previous_job: str | None,
    session_id: str | None,
    no_validate: bool,
    wait_: bool,
    timeout: float,
    poll_interval: float,
    output: str | None,
    as_json: bool,
) -> None:
    """Submit a video job. Prints the job id (stdout); with --wait, waits and downloads it.

    \b
    Examples:
      openrouter-video submit "a red fox in snow" --model google/veo-3.1 --duration 4
      openrouter-video submit "the fox runs" -m google/veo-3.1 --first-frame fox.png --wait -o fox.mp4
      openrouter-video submit "city at night" -m google/veo-3.1 \\
          --provider-option google-vertex.negativePrompt=blurry --json

    \b
    With RECEIVER_PUBLIC_URL set, the job's webhook goes to <RECEIVER_PUBLIC_URL>/webhooks/openrouter
    (unless --callback-url is given); with RECEIVER_URL and RECEIVER_API_TOKEN set, the job is
    registered with the receiver after the submit.
    """
    if output and not wait_:
        raise click.UsageError("-o/--output needs --wait (or use `openrouter-video download JOB -o FILE`)")
    fields: dict[str, Any] = {
        "duration": duration,
        "resolution": resolution,
        "aspect_ratio": aspect_ratio,
        "size": size,
        "seed": seed,
        "generate_audio": audio,
        "callback_url": callback_url or receiver_callback_url(),
        "first_frame": first_frame,
        "last_frame": last_frame,
        "input_references": list(references) or None,
        "provider_options": parse_provider_options(provider_option),
        "upscale_factor": upscale_factor,
        "creativity": creativity,
        "previous_job_id": previous_job,
        "session_id": session_id,
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    api = state.client()
    state.submitting = True
    job = api.submit(prompt, model=model, validate=not no_validate, **fields)
    state.submitting = False
    state.submitted = True
    state.working_on(job.id, f"{PROG} wait {job.id}")
    register_with_receiver(job, normalize_model_id(model), prompt)

    if not wait_:
        if as_json:
            emit_json(job_record(job))
        else:
            click.echo(job.id)
            click.echo(
                f"submitted job {job.id} ({job.status}); follow it with: {PROG} wait {job.id}", err=True
            )
        return

    click.echo(f"submitted job {job.id}", err=True)
    final = wait_with_display(state, api, job, timeout=timeout, poll_interval=poll_interval)
    if final.status != "completed":
        if as_json:
            emit_json(job_record(final))
        raise_if_unsuccessful(final)
    result = download_with_progress(state, api, final, index=0, dest=output)
    if as_json:
        emit_json(job_record(final, download=download_record(result)))
    else:
        print_download(result)


@cli.command("status")
@click.argument("job_id", metavar="JOB")
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
@pass_state
def status_cmd(state: CliState, job_id: str, as_json: bool) -> None:
    """Show a job's current state (one poll).

    \b
    Examples:
      openrouter-video status Nxff2D1Z6w4Zk9iNuZam
      openrouter-video status Nxff2D1Z6w4Zk9iNuZam --json | jq -r .status
    """
    job = state.client().get(job_id)
    if as_json:
        emit_json(job_record(job))
    else:
        click.echo(describe_job(job))


@cli.command("wait")
@click.argument("job_id", metavar="JOB")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=1200.0,
    show_default=True,
    help="Seconds to wait before giving up (the job keeps running).",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.01),
    default=2.0,
    show_default=True,
    help="First polling interval in seconds (it grows up to 30).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the final job record as JSON.")
@pass_state
def wait_cmd(state: CliState, job_id: str, timeout: float, poll_interval: float, as_json: bool) -> None:
    """Wait until a job finishes, showing its status and the elapsed time.

    Exits 1 if the job failed, was cancelled or expired, 4 if it is still running at the deadline.

    \b
    Examples:
      openrouter-video wait Nxff2D1Z6w4Zk9iNuZam
      openrouter-video wait Nxff2D1Z6w4Zk9iNuZam --timeout 600 --json
    """
    api = state.client()
    final = wait_with_display(state, api, job_id, timeout=timeout, poll_interval=poll_interval)
    if as_json:
        emit_json(job_record(final))
    else:
        click.echo(describe_job(final))
    raise_if_unsuccessful(final)
    if not as_json:
        click.echo(f"download it with: {PROG} download {final.id}", err=True)


@cli.command("download")
@click.argument("job_id", metavar="JOB")
@click.option("--index", type=click.IntRange(min=0), default=0, show_default=True, help="Which output.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File to write (default <job id>.mp4).")
@click.option("--json", "as_json", is_flag=True, help="Print path, bytes and sha256 as JSON.")
@pass_state
def download_cmd(state: CliState, job_id: str, index: int, output: str | None, as_json: bool) -> None:
    """Download a completed job's video. Prints the path, size and sha256.

    \b
    Examples:
      openrouter-video download Nxff2D1Z6w4Zk9iNuZam
      openrouter-video download Nxff2D1Z6w4Zk9iNuZam --index 1 -o second.mp4
    """
    result = download_with_progress(state, state.client(), job_id, index=index, dest=output)
    if as_json:
        emit_json({"id": job_id, "index": index, **download_record(result)})
    else:
        print_download(result)


@cli.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option(
    "--webhook-secret",
    envvar="OPENROUTER_WEBHOOK_SECRET",
    show_envvar=True,
    help="Secret to sign webhooks with.",
)
@click.option("--api-key", "sim_api_key", help="The API key the simulator accepts.")
@click.option("--workspace-webhook-url", help="Default webhook URL for jobs without callback_url.")
@click.option("--pending", type=click.FloatRange(min=0), help="Seconds a job stays pending.")
@click.option("--in-progress", type=click.FloatRange(min=0), help="Seconds a job stays in_progress.")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def simulate_cmd(
    host: str,
    port: int,
    webhook_secret: str | None,
    sim_api_key: str | None,
    workspace_webhook_url: str | None,
    pending: float | None,
    in_progress: float | None,
    log_level: str,
) -> None:
    """Run the offline OpenRouter video API simulator.

    \b
    Examples:
      openrouter-video simulate --port 8080 --webhook-secret whsec_dev --pending 2 --in-progress 5
      OPENROUTER_BASE_URL=http://127.0.0.1:8080/api/v1 openrouter-video models
    """
    from ._simulator import SimulatorConfig, serve

    options: dict[str, Any] = {
        "webhook_secret": webhook_secret,
        "api_key": sim_api_key,
        "workspace_webhook_url": workspace_webhook_url,
        "pending_seconds": pending,
        "in_progress_seconds": in_progress,
    }
    config = SimulatorConfig(**{k: v for k, v in options.items() if v is not None})
    serve(config, host=host, port=port, log_level=log_level)


def main(argv: list[str] | None = None) -> None:
    """Console script entry point (`openrouter-video`)."""
    cli.main(args=argv, prog_name=PROG)


if __name__ == "__main__":  # pragma: no cover
    main()
