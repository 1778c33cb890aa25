"""The receiver, composed once: routes, middleware, lifespan (store, client, fetcher, fallback).

Run it with `openrouter-video serve`, or `uvicorn --factory receiver.app:create_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from client import AsyncOpenRouterVideo

from . import api
from .applier import Applier
from .content import LocalContentStore
from .fallback import FallbackPoller
from .fetcher import Fetcher
from .intake import WebhookFastPath
from .logs import configure_logging, get_logger
from .metrics import Metrics
from .middleware import BearerAuthMiddleware, RequestContextMiddleware
from .openapi import openapi_json
from .settings import Settings
from .state import ReceiverState
from .store import SQLiteJobStore

WEBHOOK_PATH = "/webhooks/openrouter"
PROTECTED_PREFIXES = ("/jobs", "/metrics")


def create_app(settings: Settings | None = None) -> ASGIApp:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    log = get_logger("receiver")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, ReceiverState]]:
        store = SQLiteJobStore(settings.db_path)
        client = AsyncOpenRouterVideo(
            api_key=settings.api_key.reveal(),
            base_url=settings.base_url,
            max_retries=2,
            download_min_rate=settings.download_min_rate,
            download_deadline_base=settings.download_deadline_base,
            download_rate_grace=settings.download_rate_grace,
            allow_private_urls=settings.allow_private_urls,
        )
        content = LocalContentStore(settings.videos_dir)
        metrics = Metrics()
        metrics.gauge("receiver_fetch_queue_depth", store.queue_depth)
        metrics.gauge("receiver_deliveries_pending", store.pending_deliveries)
        fetcher = Fetcher(store, client, content, settings, metrics)
        applier = Applier(store, fetcher, metrics)
        poller = FallbackPoller(store, client, fetcher, settings, metrics)
        tasks = [
            asyncio.create_task(applier.run(), name="applier"),
            asyncio.create_task(fetcher.run(), name="fetcher"),
            asyncio.create_task(poller.run(), name="fallback"),
        ]
        log.info("receiver.started", data_dir=settings.data_dir, auth=settings.api_token is not None)
        try:
            yield {
                "receiver": ReceiverState(
                    settings=settings,
                    store=store,
                    content=content,
                    client=client,
                    metrics=metrics,
                    fetcher=fetcher,
                    applier=applier,
                    secrets=settings.secret_values(),
                )
            }
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.aclose()
            store.close()
            log.info("receiver.stopped")

    routes = [
        Route(WEBHOOK_PATH, _method_not_allowed, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route("/jobs", api.list_jobs, methods=["GET"]),
        Route("/jobs", api.register_job, methods=["POST"]),
        Route("/jobs/{job_id:path}/content", api.get_content, methods=["GET", "HEAD"]),
        Route("/jobs/{job_id:path}", api.get_job, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET", "HEAD"]),
        Route("/readyz", api.readyz, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),  # unauthenticated: shape only, no data
    ]
    token = settings.api_token.reveal() if settings.api_token else None
    middleware = [
        Middleware(RequestContextMiddleware),
        Middleware(BearerAuthMiddleware, token=token, protected=PROTECTED_PREFIXES),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    # Outside Starlette, so the hot path skips even its outermost error middleware (it handles its own).
    return WebhookFastPath(app, path=WEBHOOK_PATH)


async def _method_not_allowed(request: Request) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": 405, "message": f"use POST for {WEBHOOK_PATH}"}},
        status_code=405,
        headers={"Allow": "POST"},
    )


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": exc.status_code, "message": exc.detail}},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    get_logger("receiver").exception("request.crashed", path=request.url.path)
    return JSONResponse(
        {"error": {"code": 500, "message": "internal error; see the receiver's log"}}, status_code=500
    )
