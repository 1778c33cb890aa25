"""`submit --via-receiver URL`: the paid submit made by the receiver, which holds the API key.

One Idempotency-Key per invocation (or `--idempotency-key`, to resume one that ended unknown): a
timeout is retried with the same key, so the job is paid for once. The key is printed on stderr
before sending; after an unknown outcome, the same command with `--idempotency-key KEY` asks again
without paying again. With `--wait`: the receiver client's `wait()` (long-polls) until the job is
finished there, videos stored; exit 1 when it did not complete, 4 at the deadline.
"""

from __future__ import annotations

import os
from typing import Any

import click

from .._receiver_api import ReceiverClient
from .._receiver_submit import new_idempotency_key
from .errors import EXIT_JOB_UNSUCCESSFUL
from .format import emit_json
from .state import PROG, CliState


class JobDidNotComplete(click.ClickException):
    exit_code = EXIT_JOB_UNSUCCESSFUL


def receiver_token(token_file: str | None) -> str | None:
    if token_file:
        with open(token_file, encoding="utf-8") as fh:
            return fh.read().strip() or None
    return os.environ.get("RECEIVER_API_TOKEN", "").strip() or None


def submit_via_receiver(
    state: CliState,
    url: str,
    *,
    token_file: str | None,
    key: str | None,
    prompt: str,
    model: str,
    fields: dict[str, Any],
    as_json: bool,
    wait_timeout: float | None = None,
) -> None:
    key = key or new_idempotency_key()
    click.echo(f"submitting through the receiver at {url} (Idempotency-Key {key})", err=True)
    try:
        client = ReceiverClient(url, receiver_token(token_file))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--via-receiver'") from None
    with client:
        state.submitting = True
        submission = client.submit(prompt, model=model, idempotency_key=key, **fields)
        state.submitting = False
        job_id = submission["job_id"]
        state.submitted = True
        state.working_on(job_id, f"{PROG} jobs show {job_id} --receiver {url}")
        if wait_timeout is not None:
            click.echo(f"submitted job {job_id}; waiting for the receiver to store it", err=True)
            _report_finished(client.wait(job_id, timeout=wait_timeout), client.url, as_json)
            return
    if as_json:
        emit_json(submission)
        return
    click.echo(job_id)
    click.echo(
        f"submitted job {job_id} through the receiver (submission {submission['id']}); "
        f"follow it with: {PROG} jobs show {job_id} --receiver {url}",
        err=True,
    )


def _report_finished(record: dict[str, Any], url: str, as_json: bool) -> None:
    """The finished job: its id (stdout) and where its videos are; exit 1 unless it completed."""
    if as_json:
        emit_json(record)
    else:
        click.echo(record["id"])
        for output in record.get("outputs") or []:
            where = f"{url}{output['url']}" if output.get("url") else f"not stored ({output.get('state')})"
            click.echo(f"output {output.get('index')}: {where}", err=True)
    if record.get("status") != "completed":
        raise JobDidNotComplete(
            f"job {record['id']} {record.get('status')}: {record.get('error') or 'no error given'}"
        )
