"""`submit`: create a video job, optionally wait for it and download the result."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

import click

from .._client import OpenRouterVideo
from .._exceptions import ValidationError
from .._pricing import CostEstimate, estimate_cost
from .._validation import build_submit_body, check_capabilities, normalize_model_id
from .._webhooks import WEBHOOK_PATH
from .format import download_record, emit_json, job_record, print_download, usd
from .jobs import check_output, download_with_progress, raise_if_unsuccessful, wait_with_display
from .options import force_option, json_option, output_option, wait_options
from .receiver_link import receiver_callback_url, register_with_receiver
from .state import PROG, CliState, pass_state
from .via_receiver import submit_via_receiver


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


def _estimate(api: OpenRouterVideo, body: dict[str, Any], *, validate: bool) -> CostEstimate:
    """Check `body` against the catalog (unless --no-validate) and estimate its cost."""
    try:
        entry = api.model(body["model"])
    except ValidationError:
        if validate:
            raise
        return CostEstimate(body["model"], None, "the model is not in the catalog")
    if validate:
        check_capabilities(body, entry)
    return estimate_cost(entry, body)


def _check_max_cost(estimate: CostEstimate, max_cost: float | None) -> None:
    if max_cost is None:
        return
    if estimate.usd is None:
        raise ValidationError(
            "max_cost",
            max_cost,
            f"refusing to submit with --max-cost: the cost cannot be estimated ({estimate.reason})",
        )
    if estimate.usd > max_cost:
        raise ValidationError(
            "max_cost",
            max_cost,
            f"refusing to submit: the estimated cost {usd(estimate.usd)}"
            f"{' (at most)' if estimate.upper_bound else ''} is above --max-cost {usd(max_cost)}",
        )


def _shortened(value: Any) -> Any:
    """The body as printed by --dry-run: inline images as `data:…;base64,… (N chars)`."""
    if isinstance(value, dict):
        return {k: _shortened(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shortened(v) for v in value]
    if isinstance(value, str) and value.startswith("data:") and len(value) > 120:
        head = value.split(",", 1)[0]
        return f"{head},... ({len(value)} chars)"
    return value


@click.command("submit")
@click.argument("prompt")
@click.option("--model", "-m", required=True, help="Model id, e.g. google/veo-3.1.")
@click.option("--duration", type=int, help="Seconds.")
@click.option("--resolution", help="e.g. 720p, 1080p, 4K.")
@click.option("--aspect-ratio", help="e.g. 16:9, 9:16.")
@click.option("--size", help="WIDTHxHEIGHT, e.g. 1280x720.")
@click.option("--seed", type=int)
@click.option("--audio/--no-audio", default=None, help="Generate audio (default: the model's default).")
@click.option(
    "--callback-url", help=f"Webhook URL for this job (default: $RECEIVER_PUBLIC_URL{WEBHOOK_PATH})."
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
@click.option(
    "--dry-run",
    is_flag=True,
    help="Validate, then print the request body and its estimated cost; send nothing.",
)
@click.option(
    "--max-cost",
    type=click.FloatRange(min=0),
    metavar="USD",
    help="Refuse (exit 2) when the estimated cost is above USD or cannot be estimated.",
)
@click.option(
    "--via-receiver",
    metavar="URL",
    help="Have the receiver at URL submit it (it holds the API key; exactly once per invocation, "
    "retried safely). Token: RECEIVER_API_TOKEN or --token-file.",
)
@click.option("--token-file", type=click.Path(dir_okay=False), help="With --via-receiver: the token's file.")
@click.option(
    "--idempotency-key", metavar="KEY", help="With --via-receiver: resume a submit that ended unknown."
)
@click.option(
    "--notify-url",
    metavar="URL",
    help="With --via-receiver: where the receiver POSTs a signed notification when the job ends.",
)
@click.option("--wait", "wait_", is_flag=True, help="Wait for the job, then download the video.")
@wait_options(only_with="--wait")
@output_option("With --wait: file to write (default <job id>.mp4; - for stdout).")
@force_option()
@json_option("Print the job record as JSON.")
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
    dry_run: bool,
    max_cost: float | None,
    via_receiver: str | None,
    token_file: str | None,
    idempotency_key: str | None,
    notify_url: str | None,
    wait_: bool,
    timeout: float,
    poll_interval: float,
    output: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Submit a video job. Prints the job id (stdout); with --wait, waits and downloads it.

    \b
    Examples:
      openrouter-video submit "a red fox in snow" --model google/veo-3.1 --duration 4
      openrouter-video submit "a red fox in snow" -m google/veo-3.1 --duration 4 --dry-run
      openrouter-video submit "a red fox in snow" -m google/veo-3.1 --duration 8 --max-cost 2
      openrouter-video submit "the fox runs" -m google/veo-3.1 --first-frame fox.png --wait -o fox.mp4
      openrouter-video submit "city at night" -m google/veo-3.1 \\
          --provider-option google-vertex.negativePrompt=blurry --json
      openrouter-video submit "a red fox" -m google/veo-3.1 --via-receiver https://hooks.example.com \\
          --notify-url https://app.example.com/video-ready

    \b
    With RECEIVER_PUBLIC_URL set, the job's webhook goes to <RECEIVER_PUBLIC_URL>/webhooks/openrouter
    (unless --callback-url is given); with RECEIVER_URL and RECEIVER_API_TOKEN set, the job is
    registered with the receiver after the submit.

    \b
    With --via-receiver URL the receiver submits it (the API key stays on the server): one
    Idempotency-Key per invocation, printed on stderr, so a retried timeout never pays twice; the
    receiver checks the request against the catalog and sets the callback URL itself; with
    --notify-url it POSTs your app a signed notification when the job ends. With --wait,
    it then waits (long-polls, no polling loop) until the receiver has stored the video, and prints
    where to fetch it.

    \b
    The estimated cost (from the model's pricing SKUs) is printed on stderr before sending; it is
    "at most" when the request leaves the duration, resolution or audio open, and unknown for
    models priced per video token or per megapixel (then --max-cost refuses).
    """
    if output and not wait_:
        raise click.UsageError("-o/--output needs --wait (or use `openrouter-video download JOB -o FILE`)")
    if output == "-" and as_json:
        raise click.UsageError("--json cannot share stdout with -o - (the video)")
    check_output(output, None, 0, force=force)  # before paying for a video that could not be saved
    if via_receiver is None and (token_file or idempotency_key or notify_url):
        raise click.UsageError("--token-file, --idempotency-key and --notify-url go with --via-receiver")
    if via_receiver is not None and (output or callback_url):
        raise click.UsageError(
            "--via-receiver sets the callback URL itself, and its --wait keeps the video on the receiver "
            "(no -o): fetch it from the content URL printed, or with GET /jobs/ID/content"
        )
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
    if via_receiver is not None:
        fields.pop("callback_url", None)  # the receiver names its own webhook URL
    # Via the receiver, the catalog is checked there before paying: here only for --dry-run and
    # --max-cost (which need the estimate), and without the API key (it stays on the server).
    if via_receiver is None or dry_run or max_cost is not None:
        api = state.client() if dry_run or via_receiver else state.keyed_client()
        body = build_submit_body(model=model, prompt=prompt, **fields)
        estimate = _estimate(api, body, validate=not no_validate)
        if dry_run:
            emit_json({"body": _shortened(body), "estimate": dataclasses.asdict(estimate)})
        click.echo(estimate.describe(), err=True)
        _check_max_cost(estimate, max_cost)
        if dry_run:
            click.echo("dry run: nothing was sent", err=True)
            return
    if via_receiver is not None:
        submit_via_receiver(
            state,
            via_receiver,
            token_file=token_file,
            key=idempotency_key,
            prompt=prompt,
            model=model,
            fields={**fields, "notify_url": notify_url} if notify_url else fields,
            as_json=as_json,
            wait_timeout=timeout if wait_ else None,
        )
        return
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
    result = download_with_progress(state, api, final, index=0, dest=output, force=force)
    if as_json:
        emit_json(job_record(final, download=download_record(result)))
    else:
        print_download(result, err=output == "-")
