"""`submit --via-receiver URL`: the paid submit made by the receiver, which holds the API key.

One Idempotency-Key per invocation (or `--idempotency-key`, to resume one that ended unknown): a
timeout is retried with the same key, so the job is paid for once. The key is printed on stderr
before sending; after an unknown outcome, the same command with `--idempotency-key KEY` asks again
without paying again.
"""

from __future__ import annotations

import os
from typing import Any

import click

from .._receiver_api import ReceiverClient
from .._receiver_submit import new_idempotency_key
from .format import emit_json
from .state import PROG, CliState


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
    if as_json:
        emit_json(submission)
        return
    click.echo(job_id)
    click.echo(
        f"submitted job {job_id} through the receiver (submission {submission['id']}); "
        f"follow it with: {PROG} jobs show {job_id} --receiver {url}",
        err=True,
    )
