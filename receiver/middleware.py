"""Pure ASGI middleware: request context for logs, request timing, and the request body cap. The query
API's token guard is receiver/auth.py's."""

from __future__ import annotations

import itertools
import os
import re
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response

# A caller's (or proxy's) X-Request-ID is kept only if it is this tame: it lands in every log line.
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
# A random per-process prefix and a counter: unique, and cheaper than os.urandom per request.
_ids = itertools.count(1)
_ID_PREFIX = os.urandom(4).hex()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ids):x}"


class RequestContextMiddleware:
    """Binds a request id (the caller's X-Request-ID when sane, else a new one) to every log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = given if _REQUEST_ID.match(given) else new_request_id()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)


def route_template(path: str) -> str:
    """A route's path as its latency label: `/jobs/{job_id:path}` is `/jobs/{job_id}`."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


class RequestTimingMiddleware:
    """Observes each request's time under its route template (Starlette puts the matched route in the
    scope); a path no route matched is `unmatched`, so raw paths never become label values."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._labels: dict[str, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            state = scope.get("state", {}).get("receiver")
            if state is not None:
                route = getattr(scope.get("route"), "path", None)
                label = self._labels.get(route) if route else None
                if route and label is None:
                    label = self._labels.setdefault(route, route_template(route))
                series = state.metrics.requests
                (series.get(label) or series["unmatched"]).observe(time.perf_counter() - started)


class RequestBodyTooLarge(Exception):
    """Raised from receive() at the first body chunk past the cap; BodyLimitMiddleware answers 413."""


class BodyLimitMiddleware:
    """Caps every request body at `max_bytes`, counted on the bytes received (Content-Length can lie).

    A declared length over the cap is refused before the app runs. Otherwise the app's receive()
    raises RequestBodyTooLarge at the first chunk past the cap, before the handler reads more. The 413
    says Connection: close, so the server does not go on reading the rest only to throw it away.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.digits = len(str(max_bytes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
        if declared.isdigit() and (
            len(declared.lstrip(b"0")) > self.digits or int(declared) > self.max_bytes
        ):
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise RequestBodyTooLarge
            return message

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, capped_receive, send_tracked)
        except RequestBodyTooLarge:
            if started:  # too late to answer; uvicorn closes the connection
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, f"request body larger than {self.max_bytes} bytes")
        response.headers["connection"] = "close"
        await response(scope, receive, send)
