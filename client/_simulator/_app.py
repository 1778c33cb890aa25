"""The Starlette app: OpenRouter's four video routes, the signed storage route, and the lifespan."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from ._admin import admin_routes
from ._config import SimulatorConfig
from ._content import check_downloadable, content_response, parse_index
from ._http import ApiError, api_error_handler, check_auth, http_exception_handler, injected_error
from ._jobs import Job, build_job
from ._knobs import KnobError, job_overrides
from ._state import SimulatorState
from ._urls import API_PREFIX, polling_url
from ._validate import RequestError, validate_request
from ._views import poll_body

RAW_SEND = "openrouter_video_simulator.raw_send"


class SimulatorApp(Starlette):
    """Starlette that remembers the server's own `send`, so a handler can abort the connection.

    ASGI has no "abort" message; uvicorn's `send` is a bound method of its request cycle, whose
    `transport` can be aborted. Starlette's middleware wraps `send`, hence the stash in the scope.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[RAW_SEND] = send
        await super().__call__(scope, receive, send)


async def drop_connection(request: Request) -> Response:
    """Close the TCP connection without sending a single byte (uvicorn only)."""
    cycle = getattr(request.scope.get(RAW_SEND), "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("dropping a connection needs uvicorn's HTTP protocol (no transport found)")
    transport.abort()
    # Wait until the server has seen the disconnect, so it ignores the response returned below.
    for _ in range(20):
        if getattr(cycle, "disconnected", True):
            break
        await asyncio.sleep(0)
    return Response(status_code=204)


def _state(request: Request) -> SimulatorState:
    state: SimulatorState = request.app.state.simulator
    return state


def _base_url(request: Request, state: SimulatorState) -> str:
    return (state.config.public_url or str(request.base_url)).rstrip("/")


def _job(state: SimulatorState, job_id: str) -> Job:
    job = state.jobs.get(job_id)
    if job is None:
        raise ApiError(404, f"Video generation job {job_id!r} not found")
    return job


async def list_models(request: Request) -> Response:
    state = _state(request)
    state.count("models")
    check_auth(request, state.config)
    return JSONResponse({"data": state.catalog})


async def submit(request: Request) -> Response:
    state = _state(request)
    state.count("submits")
    config = state.config
    check_auth(request, config)
    rule = config.faults.take_error("submit")
    if rule is not None:
        raise injected_error(rule)
    raw = await request.body()
    try:
        body: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "Request body is not valid JSON") from None
    try:
        video_request = validate_request(body, state.catalog)
        overrides = job_overrides(video_request.prompt, request.headers)
        job = build_job(video_request, overrides, config, _base_url(request, state))
    except (RequestError, KnobError) as exc:
        raise ApiError(400, str(exc)) from None
    if config.faults.submit_latency:
        await asyncio.sleep(config.faults.submit_latency)
    dropped = config.faults.take_disconnect()
    if dropped and not config.faults.disconnect_creates_job:
        return await drop_connection(request)
    state.add_job(job)
    if dropped:
        return await drop_connection(request)
    return JSONResponse(
        {"id": job.id, "polling_url": polling_url(job, config.polling_url_style), "status": "pending"},
        status_code=202,
    )


async def poll(request: Request) -> Response:
    state = _state(request)
    state.count("polls")
    check_auth(request, state.config)
    job_id = request.path_params["job_id"]
    # Counted while in flight (held `poll_latency` seconds): two pollers of one job at once show up.
    state.polled.enter(job_id)
    try:
        latency = state.config.faults.poll_latency
        if latency:
            await asyncio.sleep(latency)
        rule = state.config.faults.take_error("poll")
        if rule is not None:
            raise injected_error(rule)
        job = _job(state, job_id)
        return JSONResponse(poll_body(job, job.status(), state.config, state.signer))
    finally:
        state.polled.leave(job_id)


async def content(request: Request) -> Response:
    state = _state(request)
    state.count("content")
    check_auth(request, state.config)
    rule = state.config.faults.take_error("content")
    if rule is not None:
        raise injected_error(rule)
    job = _job(state, request.path_params["job_id"])
    index = parse_index(request.query_params.get("index"))
    check_downloadable(job, index, job.is_gone(state.config.faults))
    return content_response(request, job, index, lambda: job.content_rate(state.config.faults), state.served)


async def signed_content(request: Request) -> Response:
    """The key-free `urls[i]`: valid signature and not expired, then the same checks as content."""
    state = _state(request)
    state.count("content")
    state.count("signed_content")
    rule = state.config.faults.take_error("content")
    if rule is not None:
        raise injected_error(rule)
    job_id, index = request.path_params["job_id"], request.path_params["index"]
    problem = state.signer.problem(
        job_id, index, request.query_params.get("expires"), request.query_params.get("sig")
    )
    if problem is not None:
        raise ApiError(403, problem)
    job = _job(state, job_id)
    check_downloadable(job, index, job.is_gone(state.config.faults))
    return content_response(request, job, index, lambda: job.content_rate(state.config.faults), state.served)


def api_routes() -> list[BaseRoute]:
    return [
        Route(f"{API_PREFIX}/videos/models", list_models, methods=["GET"]),
        Route(f"{API_PREFIX}/videos", submit, methods=["POST"]),
        Route(f"{API_PREFIX}/videos/{{job_id}}", poll, methods=["GET"]),
        Route(f"{API_PREFIX}/videos/{{job_id}}/content", content, methods=["GET"]),
        Route("/storage/{job_id}/{index:int}.mp4", signed_content, methods=["GET"]),
    ]


def create_app(config: SimulatorConfig | None = None) -> Starlette:
    """A new simulator app with its own state (`app.state.simulator`)."""
    config = config or SimulatorConfig()
    state = SimulatorState(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await state.aclose()

    routes = api_routes() + (admin_routes() if config.admin else [])
    app = SimulatorApp(
        routes=routes,
        exception_handlers={ApiError: api_error_handler, HTTPException: http_exception_handler},
        lifespan=lifespan,
    )
    app.state.simulator = state
    return app
