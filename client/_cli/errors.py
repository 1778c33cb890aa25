"""Exit codes and the one place where every outcome of a command line becomes one (`run_mapped`)."""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from .._exceptions import (
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
from .state import PROG, CliState

EXIT_OK = 0
EXIT_JOB_UNSUCCESSFUL = 1
EXIT_USAGE = 2
EXIT_API = 3
EXIT_STILL_RUNNING = 4
EXIT_INTERRUPTED = 130


def one_line(text: str) -> str:
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
        return f"error: {one_line(error.format_message())}{hint}"
    if isinstance(error, click.ClickException):
        return f"error: {one_line(error.format_message())}"
    if isinstance(error, JobNotFinished):
        return f"error: {one_line(error.message)}; resume with: {PROG} wait {error.job_id}"
    if isinstance(error, SubmissionOutcomeUnknown):
        return f"error: submission outcome unknown: {one_line(error.message)}"
    if isinstance(error, JobUnsuccessful):
        return f"error: {one_line(error.message)}"
    if isinstance(error, APIError):
        hint = ""
        if error.status_code == 401:
            hint = " (check --api-key / OPENROUTER_API_KEY)"
        elif error.status_code == 402:
            hint = " (add credits at https://openrouter.ai/settings/credits)"
        return f"error: {one_line(str(error))}{hint}"
    if isinstance(error, TransportError):
        return f"error: could not reach the API: {one_line(error.message)}"
    if isinstance(error, (ResponseFormatError, DownloadError, ValidationError, OpenRouterVideoError)):
        return f"error: {one_line(error.message)}"
    if isinstance(error, OSError):
        return f"error: {one_line(str(error))}"
    return f"error: unexpected {type(error).__name__}: {one_line(str(error))} (run with -v for a traceback)"


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
