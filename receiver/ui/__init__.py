"""The web dashboard, served by the receiver under /ui/ (issue 14): find a job, watch it move, play its
video, fix what went wrong, submit a new one.

`routes(settings)` is all the app adds; `ROUTE_TEMPLATES` are its paths as latency labels. Pages are
server-rendered (Jinja2, autoescaped), with one stylesheet and one small script from `static/`
(nothing from another origin). What the pages read and change goes through `receiver.ui.data` only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, request_response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from ..settings import Settings
from .pages import STATIC_DIR, SecurityHeaders
from .submit_views import SubmitPages
from .views import Dashboard

__all__ = ["ROUTE_TEMPLATES", "routes"]

ROUTE_TEMPLATES = (
    "/",
    "/ui",
    "/ui/",
    "/ui/signin",
    "/ui/signout",
    "/ui/ops",
    "/ui/events",
    "/ui/deliveries/reprocess",
    "/ui/jobs/{job_id}",
    "/ui/jobs/{job_id}/content",
    "/ui/jobs/{job_id}/outputs/{index}/retry",
    "/ui/submit",
    "/ui/submit/review",
    "/ui/submit/pay",
    "/ui/submissions/{ref}",
    "/ui/static",
)


async def _to_dashboard(request: Request) -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


def _guarded(endpoint: Callable[[Request], Awaitable[Response]]) -> ASGIApp:
    return SecurityHeaders(request_response(endpoint))


def routes(settings: Settings) -> list[BaseRoute]:
    ui = Dashboard(settings)
    submit = SubmitPages(ui)
    guarded = _guarded
    return [
        Route("/", _to_dashboard, methods=["GET", "HEAD"]),
        Route("/ui", _to_dashboard, methods=["GET", "HEAD"]),
        Route("/ui/", guarded(ui.page(ui.jobs)), methods=["GET", "HEAD"]),
        Route("/ui/signin", guarded(ui.signin_form), methods=["GET", "HEAD"]),
        Route("/ui/signin", guarded(ui.signin), methods=["POST"]),
        Route("/ui/signout", guarded(ui.page(ui.signout)), methods=["POST"]),
        Route("/ui/ops", guarded(ui.page(ui.ops)), methods=["GET", "HEAD"]),
        Route("/ui/events", guarded(ui.page(ui.events, api=True)), methods=["GET"]),
        Route("/ui/deliveries/reprocess", guarded(ui.page(ui.reprocess)), methods=["POST"]),
        Route("/ui/jobs/{job_id}", guarded(ui.page(ui.job)), methods=["GET", "HEAD"]),
        Route("/ui/jobs/{job_id}/content", guarded(ui.page(ui.content, api=True)), methods=["GET", "HEAD"]),
        Route("/ui/jobs/{job_id}/outputs/{index}/retry", guarded(ui.page(ui.retry_output)), methods=["POST"]),
        Route("/ui/submit", guarded(ui.page(submit.form)), methods=["GET", "HEAD", "POST"]),
        Route("/ui/submit/review", guarded(ui.page(submit.review)), methods=["POST"]),
        Route("/ui/submit/pay", guarded(ui.page(submit.pay)), methods=["POST"]),
        Route("/ui/submissions/{ref}", guarded(ui.page(submit.submission)), methods=["GET", "HEAD"]),
        Mount("/ui/static", app=SecurityHeaders(StaticFiles(directory=STATIC_DIR))),
    ]
