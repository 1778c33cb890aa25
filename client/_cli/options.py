"""Options and arguments that several commands share, declared once.

Each factory returns a decorator; the help text is the only thing that varies between commands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

WAIT_TIMEOUT = 1200.0
WAIT_FIRST_INTERVAL = 2.0


def stacked(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Apply `decorators` as if written one above the other (so options keep their help order)."""

    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def job_argument() -> Callable[[F], F]:
    """The `JOB` argument: an OpenRouter job id."""
    return click.argument("job_id", metavar="JOB")


def json_option(help: str) -> Callable[[F], F]:
    """`--json` (as the `as_json` parameter): print a machine-readable document instead of text."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def output_option(help: str) -> Callable[[F], F]:
    """`-o/--output FILE`: where a downloaded video goes."""
    return click.option("-o", "--output", type=click.Path(dir_okay=False), help=help)


def force_option() -> Callable[[F], F]:
    """`--force`: overwrite an existing output file."""
    return click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")


def wait_options(only_with: str | None = None) -> Callable[[F], F]:
    """`--timeout` and `--poll-interval` for waiting on a job.

    `only_with` names the flag they depend on (`"--wait"`): their help then starts "With --wait: ...".
    """

    def help_text(text: str) -> str:
        return f"With {only_with}: {text[0].lower()}{text[1:]}" if only_with else text

    return stacked(
        click.option(
            "--timeout",
            type=click.FloatRange(min=0),
            default=WAIT_TIMEOUT,
            show_default=True,
            help=help_text("Seconds to wait before giving up (the job keeps running)."),
        ),
        click.option(
            "--poll-interval",
            type=click.FloatRange(min=0.01),
            default=WAIT_FIRST_INTERVAL,
            show_default=True,
            help=help_text("First polling interval in seconds (it grows up to 30)."),
        ),
    )
