"""A local simulator of OpenRouter's asynchronous video API, for tests, demos and offline work.

Routes (bearer auth: the configured `api_key`, or any non-empty key if none is set):

    GET  /api/v1/videos/models                 {"data": CATALOG}
    POST /api/v1/videos                        202 {"id", "polling_url", "status": "pending"}; 400 on invalid input
    GET  /api/v1/videos/{id}                   job status; outputs, signed urls and usage once completed
    GET  /api/v1/videos/{id}/content?index=N   the video bytes (single Range -> 206); 409 not done, 410 gone
    GET  /storage/{id}/{N}.mp4?expires=&sig=   signed key-free copy (`urls[N]`); 403 if tampered or expired

Jobs are `pending` for `pending_seconds`, `in_progress` for `in_progress_seconds`, then end with
their outcome. At that moment a webhook is POSTed to `callback_url` (else the workspace URL),
signed with `webhook_secret` like OpenRouter does, and retried with backoff on failure.
Every output is a real tiny H.264 MP4 of the requested frame size and duration (else the model's
defaults; see `_video`), padded with an ISO-BMFF `free` box to the requested size.

Knobs. The same names work globally (faults JSON / `SimulatorConfig.faults`) and per job, as a
prompt marker `[sim:name=value, name2=value2]` or a header `X-Simulator-Name: value` (underscores
as dashes, e.g. `X-Simulator-In-Progress`); a header beats a marker, both beat the global fault:

    outcome      completed | failed | cancelled | expired
    webhook      normal | drop | bad_signature | stale | future   (stale/future: timestamp 1000 s off)
    copies       deliver the webhook N times, concurrently
    delay        seconds to wait after the terminal status before delivering
    outputs      number of outputs (1..16)
    bytes        size of each output (the bare video's size, or at least that + 8)
    gone         true: content answers 410 (global value is read live, so it hits finished jobs too)
    pending      seconds in `pending`
    in_progress  seconds in `in_progress`
    rate         content throttle, bytes/s

Global-only faults (JSON for `POST /_simulator/faults`, merged into the current ones):

    submit_errors / poll_errors / content_errors: [{"status": 429, "count": 2, "retry_after": 1}, ...]
        consumed in order by the next matching requests (after auth; the signed storage URL counts
        as content); `retry_after` (seconds, fractions allowed) adds a `Retry-After` header.
    submit_disconnects: N            the next N valid submits close the connection without an answer
    disconnect_creates_job: true     whether such a dropped submit still created its job
    poll_latency: 0.2                hold every poll this many seconds before answering (polls of one
                                     job by two workers at once then overlap: see the admin stats)
    submit_latency: 2                hold every valid submit this many seconds before its job is
                                     created and answered (`requests.submits` in the admin stats
                                     counts it on arrival; `jobs` counts the jobs made)

Admin endpoints (no auth, only when `config.admin`): see `_admin`.
"""

from __future__ import annotations

from ._app import create_app
from ._catalog import CATALOG
from ._config import ErrorRule, Faults, SimulatorConfig

__all__ = ["CATALOG", "ErrorRule", "Faults", "SimulatorConfig", "create_app", "serve"]


def serve(
    config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 8080, log_level: str = "info"
) -> None:
    """Run the simulator with uvicorn until interrupted (used by `openrouter-video simulate`)."""
    import uvicorn

    uvicorn.run(create_app(config), host=host, port=port, log_level=log_level, lifespan="on")
