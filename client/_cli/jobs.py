"""Commands on an existing job: `status`, `wait` and `download`, and the live waits `submit` reuses."""

from __future__ import annotations

import os

import click

from .._base import default_dest, finish
from .._client import OpenRouterVideo
from .._types import DownloadResult, VideoJob
from .display import DownloadProgress, StatusDisplay
from .format import describe_job, download_record, emit_json, job_record, print_download
from .options import job_argument, json_option, output_option, wait_options
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
@output_option("File to write (default <job id>.mp4).")
@json_option("Print path, bytes and sha256 as JSON.")
@pass_state
def download_cmd(state: CliState, job_id: str, index: int, output: str | None, as_json: bool) -> None:
    """Download a completed job's video. Prints the path, size and sha256.

    \b
    Examples:
      openrouter-video download Nxff2D1Z6w4Zk9iNuZam
      openrouter-video download Nxff2D1Z6w4Zk9iNuZam --index 1 -o second.mp4
    """
    result = download_with_progress(state, state.keyed_client(), job_id, index=index, dest=output)
    if as_json:
        emit_json({"id": job_id, "index": index, **download_record(result)})
    else:
        print_download(result)
