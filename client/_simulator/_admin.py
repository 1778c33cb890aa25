"""Admin endpoints under `/_simulator` (no auth; mounted only when `config.admin` is true).

GET/POST/DELETE /_simulator/faults      read / merge JSON into / reset the global faults
GET             /_simulator/jobs        all jobs, short form
GET             /_simulator/jobs/{id}   internal state, outputs with size and sha256 (?hash=0 skips it)
POST            /_simulator/jobs/{id}   change a job at runtime: {"gone": bool|null, "rate": n|null}
GET/DELETE      /_simulator/deliveries  webhook attempt log (?job_id=...) / clear it
GET/DELETE      /_simulator/stats       request counters per endpoint kind, bodies served and polls in
                                        flight (totals; per output and per job with ?detail=1) / reset
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ._http import ApiError
from ._jobs import Job
from ._knobs import KnobError, parse_knob
from ._mp4 import content_sha256
from ._state import SimulatorState
from ._views import admin_view

PREFIX = "/_simulator"


def _state(request: Request) -> SimulatorState:
    state: SimulatorState = request.app.state.simulator
    return state


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body


def _job(state: SimulatorState, job_id: str) -> Job:
    job = state.jobs.get(job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id!r}")
    return job


async def faults(request: Request) -> Response:
    config = _state(request).config
    if request.method == "POST":
        try:
            config.faults.update(await _json_object(request))
        except KnobError as exc:
            raise ApiError(400, str(exc)) from None
    elif request.method == "DELETE":
        config.faults.reset()
    return JSONResponse(config.faults.to_dict())


async def jobs(request: Request) -> Response:
    return JSONResponse(
        {
            "data": [
                {"id": j.id, "status": j.status(), "outcome": j.outcome} for j in _state(request).jobs.all()
            ]
        }
    )


async def job_detail(request: Request) -> Response:
    state = _state(request)
    job = _job(state, request.path_params["job_id"])
    if request.method == "POST":
        changes = await _json_object(request)
        unknown = set(changes) - {"gone", "rate"}
        if unknown:
            raise ApiError(400, f"can only change gone and rate, not {sorted(unknown)}")
        try:
            for name, value in changes.items():
                setattr(job, name, None if value is None else parse_knob(name, value))
        except KnobError as exc:
            raise ApiError(400, str(exc)) from None
    hashes: list[str | None] = [None] * job.outputs
    if request.query_params.get("hash", "1") not in ("0", "false", "no"):
        # Hashing a multi-GB output takes seconds: keep the event loop free meanwhile.
        hashes = [
            await run_in_threadpool(content_sha256, job.id, i, job.bytes, job.video)
            for i in range(job.outputs)
        ]
    return JSONResponse(admin_view(job, state.config, hashes))


async def deliveries(request: Request) -> Response:
    log = _state(request).deliveries
    if request.method == "DELETE":
        log.clear()
    job_id = request.query_params.get("job_id")
    return JSONResponse({"data": [a.to_dict() for a in log.list(job_id)]})


async def stats(request: Request) -> Response:
    state = _state(request)
    if request.method == "DELETE":
        state.reset_counts()
    body: dict[str, Any] = {
        "requests": state.counts(),
        "jobs": len(state.jobs),
        "pending_deliveries": state.pending_deliveries,
        "webhooks": state.deliveries.totals(),
        "served": state.served.totals(),
        "polled": state.polled.totals(),
    }
    if request.query_params.get("detail", "0") not in ("0", "false", "no"):
        body["served"]["by_output"] = state.served.snapshot()
        body["polled"]["by_job"] = state.polled.snapshot()
    return JSONResponse(body)


def admin_routes() -> list[BaseRoute]:
    return [
        Route(f"{PREFIX}/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route(f"{PREFIX}/jobs", jobs, methods=["GET"]),
        Route(f"{PREFIX}/jobs/{{job_id}}", job_detail, methods=["GET", "POST"]),
        Route(f"{PREFIX}/deliveries", deliveries, methods=["GET", "DELETE"]),
        Route(f"{PREFIX}/stats", stats, methods=["GET", "DELETE"]),
    ]
