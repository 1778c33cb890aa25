"""Commands on an existing job: `status`, `wait` and `download`, and the live waits `submit` reuses."""

from __future__ import annotations

import os
import sys
from typing import BinaryIO

import click

from .._base import default_dest, finish
from .._client import OpenRouterVideo
from .._exceptions import ValidationError
from .._types import DownloadResult, VideoJob
from .display import DownloadProgress, StatusDisplay
from .format import describe_job, download_record, emit_json, job_record, print_download
from .options import force_option, job_argument, json_option, output_option, wait_options
from .state import PROG, CliState, pass_state


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


def check_output(dest: str | None, job_id: str | None, index: int, *, force: bool) -> None:
    """Refuse, before anything is sent, to overwrite a file (without --force) or to create directories."""
    if dest == "-" or (dest is None and job_id is None):
        return
    target = dest or default_dest(str(job_id), index)
    parent = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(parent):
        raise ValidationError("output", target, f"directory {parent} does not exist; create it first")
    if os.path.exists(target) and not force:
        raise ValidationError("output", target, f"{target} already exists; use --force to overwrite it")


def download_with_progress(
    state: CliState,
    api: OpenRouterVideo,
    job: VideoJob | str,
    *,
    index: int,
    dest: str | None,
    force: bool = False,
) -> DownloadResult:
    """Download with a progress bar on stderr; `dest` "-" streams the bytes to stdout."""
    job_id = job.id if isinstance(job, VideoJob) else job
    check_output(dest, job_id, index, force=force)
    state.working_on(
        job_id,
        f"{PROG} download {job_id}"
        + (f" --index {index}" if index else "")
        + (f" -o {dest}" if dest else ""),
    )
    target = dest or default_dest(job_id, index)
    progress = DownloadProgress(f"downloading {'to stdout' if target == '-' else os.path.basename(target)}")
    try:
        if target == "-":
            stdout: BinaryIO = sys.stdout.buffer
            return api.download(job, index, stdout, progress=progress)
        return api.download(job, index, target, progress=progress)
    finally:
        progress.finish()


def raise_if_unsuccessful(job: VideoJob) -> None:
    finish(job, raise_on_failure=True)


@click.command("status")
@job_argument()
@json_option("Print the job record as JSON.")
@pass_state
def status_cmd(state: CliState, job_id: str, as_json: bool) -> None:
    """Show a job's current state (one poll).

    \b
    Examples:
      openrouter-video status Nxff2D1Z6w4Zk9iNuZam
      openrouter-video status Nxff2D1Z6w4Zk9iNuZam --json | jq -r .status
    """
    job = state.one_shot_client(keyed=True).get(job_id)
    if as_json:
        emit_json(job_record(job))
    else:
        click.echo(describe_job(job))


@click.command("wait")
@job_argument()
@wait_options()
@json_option("Print the final job record as JSON.")
@pass_state
def wait_cmd(state: CliState, job_id: str, timeout: float, poll_interval: float, as_json: bool) -> None:
    """Wait until a job finishes, showing its status and the elapsed time.

    Exits 1 if the job failed, was cancelled or expired, 4 if it is still running at the deadline.

    \b
    Examples:
      openrouter-video wait Nxff2D1Z6w4Zk9iNuZam
      openrouter-video wait Nxff2D1Z6w4Zk9iNuZam --timeout 600 --json
    """
    api = state.keyed_client()
    final = wait_with_display(state, api, job_id, timeout=timeout, poll_interval=poll_interval)
    if as_json:
        emit_json(job_record(final))
    else:
        click.echo(describe_job(final))
    raise_if_unsuccessful(final)
    if not as_json:
        click.echo(f"download it with: {PROG} download {final.id}", err=True)


@click.command("download")
@job_argument()
@click.option("--index", type=click.IntRange(min=0), default=0, show_default=True, help="Which output.")
@output_option("File to write (default <job id>.mp4; - for stdout).")
@force_option()
@json_option("Print path, bytes and sha256 as JSON.")
@pass_state
def download_cmd(
    state: CliState, job_id: str, index: int, output: str | None, force: bool, as_json: bool
) -> None:
    """Download a completed job's video. Prints the path, size and sha256.

    An existing file is not overwritten without --force, and the directory must exist. An
    interrupted download leaves FILE.part: running the command again resumes it.

    \b
    Examples:
      openrouter-video download Nxff2D1Z6w4Zk9iNuZam
      openrouter-video download Nxff2D1Z6w4Zk9iNuZam --index 1 -o second.mp4
      openrouter-video download Nxff2D1Z6w4Zk9iNuZam -o - | ffprobe -
    """
    if output == "-" and as_json:
        raise click.UsageError("--json cannot share stdout with -o - (the video)")
    check_output(output, job_id, index, force=force)
    result = download_with_progress(
        state, state.keyed_client(), job_id, index=index, dest=output, force=force
    )
    if as_json:
        emit_json({"id": job_id, "index": index, **download_record(result)})
    else:
        print_download(result, err=output == "-")
