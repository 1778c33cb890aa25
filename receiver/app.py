"""The receiver, composed once: routes, middleware, lifespan (stores, client, workers).

Run it with `openrouter-video serve`, or `uvicorn --factory openrouter_video.receiver.app:create_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from openrouter_video import WEBHOOK_PATH, AsyncOpenRouterVideo

from . import api, api_events, api_notifications, api_submit, api_usage, api_wait, ui
from .auth import BearerAuthMiddleware, TokenAuth
from .errors import INTERNAL_ERROR, error_response
from .intake import WebhookFastPath
from .logs import configure_logging
from .metrics import Metrics
from .middleware import (
    BodyLimitMiddleware,
    RequestContextMiddleware,
    RequestTimingMiddleware,
    route_template,
)
from .openapi import openapi_json
from .settings import Settings
from .state import ReceiverState
from .storage import open_stores
from .storage.base import Stores
from .submitting import Submitter
from .watch import JobWatch
from .workers.applier import Applier
from .workers.fallback import FallbackPoller
from .workers.fetcher import Fetcher
from .workers.notifier import Notifier
from .workers.retention import retention_policy, run_sweeps

PROTECTED_PREFIXES = (
    "/jobs",
    "/submissions",
    "/deliveries",
    "/events",
    "/usage",
    "/metrics",
    "/notifications",
)
# The request-latency histogram's route labels: the webhook and every route below, as templates.
ROUTE_TEMPLATES = (
    WEBHOOK_PATH,
    *dict.fromkeys(
        route_template(p)
        for p in (
            "/jobs",
            "/jobs/{job_id:path}/content",
            "/jobs/{job_id:path}",
            "/submissions/{ref:path}",
            "/usage",
            "/deliveries",
            "/deliveries/reprocess",
            "/notifications",
            "/notifications/{notification_id}/retry",
            "/events",
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
        )
    ),
    *ui.ROUTE_TEMPLATES,
)


def create_app(
    settings: Settings | None = None, *, stores: Stores | None = None, address: str | None = None
) -> ASGIApp:
    """The receiver app; `stores`: already opened on the serving loop (by `serve`, to fail in one
    line; the app closes them); `address`: where it listens (`serve` binds first and says so in
    `receiver.started`)."""
    settings = settings or Settings.from_env()
    auth = TokenAuth(settings.api_token.reveal() if settings.api_token else None)
    if not structlog.is_configured():  # `serve` configured it already; `uvicorn --factory` did not
        configure_logging(settings.log_format, settings.log_level)
    log = structlog.get_logger("receiver")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, ReceiverState]]:
        nonlocal stores  # handed over once; a later lifespan of the same app opens anew
        held = stores if stores is not None else await open_stores(settings, exclusive=True, check=True)
        stores = None
        client = AsyncOpenRouterVideo(
            api_key=settings.api_key.reveal(),
            base_url=settings.base_url,
            max_retries=2,
            download_min_rate=settings.download_min_rate,
            download_deadline_base=settings.download_deadline_base,
            download_rate_grace=settings.download_rate_grace,
            allow_private_urls=settings.allow_private_urls,
        )
        metrics = Metrics(routes=ROUTE_TEMPLATES)
        fetcher = Fetcher(held, client, settings, metrics)
        applier = Applier(held, metrics)
        poller = FallbackPoller(held, client, settings, metrics)
        submitter = Submitter(held, client, settings)
        watch = JobWatch(held)
        await submitter.recover()  # submits a stopped run left undecided: outcome_unknown, never resent
        tasks = [
            asyncio.create_task(applier.run(), name="applier"),
            asyncio.create_task(fetcher.run(), name="fetcher"),
            asyncio.create_task(poller.run(), name="fallback"),
            # Always: notifications written before a restart (or by another replica) still go out.
            asyncio.create_task(Notifier(held, settings).run(), name="notifier"),
        ]
        policy = retention_policy(settings)
        if not policy.empty:
            tasks.append(
                asyncio.create_task(run_sweeps(held, policy, settings.sweep_interval), name="retention")
            )
        log.info(
            "receiver.started",
            address=address,
            data_dir=settings.data_dir,
            auth=settings.api_token is not None,
            notifications=_notifications_status(settings),
        )
        try:
            yield {
                "receiver": ReceiverState(
                    settings=settings,
                    stores=held,
                    client=client,
                    metrics=metrics,
                    fetcher=fetcher,
                    applier=applier,
                    secrets=settings.secret_values(),
                    submitter=submitter,
                    watch=watch,
                    auth=auth,
                )
            }
        finally:
            watch.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.aclose()
            await held.close()
            log.info("receiver.stopped")

    routes = [
        Route(WEBHOOK_PATH, _method_not_allowed, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route("/jobs", api.list_jobs, methods=["GET"]),
        Route("/jobs", api_submit.post_jobs, methods=["POST"]),
        Route("/submissions/{ref:path}", api_submit.get_submission, methods=["GET"]),
        Route("/usage", api_usage.get_usage, methods=["GET"]),
        Route("/jobs/{job_id:path}/content", api.get_content, methods=["GET", "HEAD"]),
        Route("/jobs/{job_id:path}", api_wait.get_job, methods=["GET"]),
        Route("/deliveries", api.list_deliveries, methods=["GET"]),
        Route("/deliveries/reprocess", api.reprocess_deliveries, methods=["POST"]),
        Route("/notifications", api_notifications.list_notifications, methods=["GET"]),
        Route(
            "/notifications/{notification_id}/retry",
            api_notifications.retry_notification,
            methods=["POST"],
        ),
        Route("/events", api_events.stream_events, methods=["GET"]),
        Route("/jobs/{job_id:path}", api.delete_job, methods=["DELETE"]),
        Route("/healthz", api.healthz, methods=["GET", "HEAD"]),
        Route("/readyz", api.readyz, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),  # unauthenticated: shape only, no data
        *ui.routes(settings),  # the dashboard, /ui/ (its own session sign-in; see receiver/ui)
    ]
    middleware = [
        Middleware(RequestTimingMiddleware),
        Middleware(RequestContextMiddleware),
        # Every route's body; the webhook fast path is outside Starlette and caps its own.
        Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
        # Named tokens and roles (receiver/auth.py); the dashboard has its own sessions (receiver/ui).
        Middleware(BearerAuthMiddleware, auth=auth, protected=PROTECTED_PREFIXES),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _http_error,
            api.BadRequestBody: _bad_request_body,
            Exception: _server_error,
        },
    )
    # Outside Starlette, so the hot path skips even its outermost error middleware (it handles its own).
    return WebhookFastPath(app, path=WEBHOOK_PATH)


def _notifications_status(settings: Settings) -> str:
    """What `receiver.started` says of notifications to apps (never the secret)."""
    if settings.notify_secret is None:
        return "off: RECEIVER_NOTIFY_SECRET is not set (a job naming a notify_url is refused with 503)"
    default = f"default {settings.notify_url}" if settings.notify_url else "no default URL"
    public = "" if settings.public_url else "; RECEIVER_PUBLIC_URL unset: content URLs are relative"
    return f"on, signed ({default}){public}"


async def _method_not_allowed(request: Request) -> JSONResponse:
    return error_response(405, f"use POST for {WEBHOOK_PATH}", headers={"Allow": "POST"})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)  # registered for it alone
    return error_response(exc.status_code, exc.detail, headers=exc.headers)


async def _bad_request_body(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, api.BadRequestBody)  # registered for it alone
    return error_response(exc.status, exc.message)


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    structlog.get_logger("receiver").exception("request.crashed", path=request.url.path)
    return error_response(500, INTERNAL_ERROR)
