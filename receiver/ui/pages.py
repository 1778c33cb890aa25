"""The plumbing of the dashboard's pages: security headers, forms, rendering, flash messages, and the
signed-in wrapper every page and action goes through (`Pages.page`).

Every page answers with a strict Content-Security-Policy (scripts, styles and media from this origin
only, no inline code, no framing), `nosniff`, `Referrer-Policy: same-origin` and `Cache-Control:
no-store`. Every state-changing request is a POST from a same-origin form with the session's CSRF
token. The pages themselves are in `views.py` and `submit_views.py`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
import structlog
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openrouter_video import ALL_STATUSES, TERMINAL_STATUSES

from ..domain.tokens import ADMIN_NAME
from ..settings import Settings
from ..state import state_of
from ..storage.base import StoreUnavailable
from .auth import Session, Sessions, same_origin
from .format import FILTERS

log = structlog.get_logger("receiver.ui")

HERE = os.path.dirname(os.path.abspath(__file__))
STATIC_DIR = os.path.join(HERE, "static")
FLASH_COOKIE = "orv_flash"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


class SecurityHeaders:
    """Adds the dashboard's security headers to every response of the wrapped ASGI app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _static_version() -> str:
    digest = hashlib.sha256()
    for name in sorted(os.listdir(STATIC_DIR)):
        with open(os.path.join(STATIC_DIR, name), "rb") as fh:
            digest.update(fh.read())
    return digest.hexdigest()[:12]


Endpoint = Callable[[Request], Awaitable[Response]]


class Form:
    """A submitted form (application/x-www-form-urlencoded, the only kind these pages send), parsed here:
    Starlette's own form parser needs python-multipart, a dependency for nothing the dashboard uses."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self.fields = fields

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None

    def getlist(self, name: str) -> list[str]:
        return self.fields.get(name, [])


async def read_form(request: Request) -> Form:
    cached = getattr(request.state, "ui_form", None)
    if isinstance(cached, Form):
        return cached
    form = Form({})
    if (
        request.headers.get("content-type", "").split(";")[0].strip().lower()
        == "application/x-www-form-urlencoded"
    ):
        body = await request.body()  # capped by the app's body limit (RECEIVER_MAX_BODY_BYTES)
        with contextlib.suppress(ValueError):  # more than 200 fields: no form of these pages
            form = Form(parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=200))
    request.state.ui_form = form
    return form


class Pages:
    """What every page of the dashboard shares: its sessions, templates and the signed-in wrapper."""

    def __init__(self, settings: Settings) -> None:
        self.sessions = Sessions(settings)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
            autoescape=True,  # every value is escaped unless a template says otherwise (none does)
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(FILTERS)
        version = _static_version()
        self.env.globals["static"] = lambda name: f"/ui/static/{name}?v={version}"
        self.env.globals["statuses"] = ALL_STATUSES
        self.env.globals["terminal"] = TERMINAL_STATUSES
        # Submitting needs the receiver's public URL (OpenRouter is given its webhook URL).
        self.env.globals["can_submit"] = settings.callback_url is not None

    # -- plumbing ------------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        name: str,
        session: Session | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        flash = self._flash(request)
        html = self.env.get_template(name).render(
            request_path=request.url.path,
            session=session,
            csrf=self.sessions.csrf_token(session) if session else "",
            open_access=self.sessions.open_access,
            flash=flash,
            **context,
        )
        response = HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})
        if flash:
            response.delete_cookie(FLASH_COOKIE, path="/ui")
        return response

    def _flash(self, request: Request) -> str | None:
        value = request.cookies.get(FLASH_COOKIE, "")
        text, _, signature = value.rpartition(".")
        if not text or not self.sessions.verify(f"flash.{text}", signature):
            return None
        try:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()[:500]
        except (ValueError, UnicodeDecodeError):
            return None

    def redirect_with(self, request: Request, target: str, message: str | None = None) -> Response:
        response = RedirectResponse(target, status_code=303)
        if message:
            text = base64.urlsafe_b64encode(message[:500].encode()).decode().rstrip("=")
            response.set_cookie(
                FLASH_COOKIE,
                f"{text}.{self.sessions.sign(f'flash.{text}')}",
                max_age=60,
                path="/ui",
                secure=request.url.scheme == "https",
                httponly=True,
                samesite="strict",
            )
        return response

    def page(
        self, endpoint: Callable[[Request, Session], Awaitable[Response]], *, api: bool = False
    ) -> Endpoint:
        """A signed-in endpoint: without a session, a page redirects to sign-in and `api` answers 401.
        Without a token configured (loopback, `--no-auth`), the visitor gets a session at once."""

        async def guarded(request: Request) -> Response:
            session = await self._valid_session(request)
            issued = None
            if session is None and self.sessions.open_access:
                session, issued = self.sessions.new()
            if session is None:
                if api:
                    return Response("sign in first", status_code=401, media_type="text/plain")
                back = "/ui/"  # after sign-in, a POST's address cannot be visited: the jobs then
                if request.method in ("GET", "HEAD"):
                    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/ui/signin?{urlencode({'next': back})}", status_code=303)
            if request.method == "POST":
                refusal = await self._check_post(request, session)
                if refusal is not None:
                    return refusal
            response = await endpoint(request, session)
            if issued is not None:
                self.sessions.set_cookie(response, request, issued)
            return response

        return guarded

    async def _valid_session(self, request: Request) -> Session | None:
        """The cookie's session while its token is valid: a named token's session ends when the
        token is revoked (checked through receiver/auth.py's short cache), or loses its admin role."""
        session = self.sessions.read(request)
        if session is None or session.who == ADMIN_NAME:
            return session
        state = state_of(request)
        try:
            principal = await state.auth.named(session.who, state.stores.tokens)
        except StoreUnavailable:
            return None
        return session if principal is not None and principal.is_admin else None

    async def _check_post(self, request: Request, session: Session) -> Response | None:
        if not same_origin(request):
            log.warning("ui.cross_site_refused", path=request.url.path, origin=request.headers.get("origin"))
            return self.refuse(request, session, "This request came from another site and was refused.")
        form = await read_form(request)
        given = form.get("csrf")
        if not isinstance(given, str) or not self.sessions.csrf_ok(session, given):
            log.warning("ui.csrf_refused", path=request.url.path)
            return self.refuse(
                request,
                session,
                "The form's security token is missing or out of date: reload the page and try again.",
            )
        return None

    def refuse(self, request: Request, session: Session | None, message: str) -> Response:
        return self.render(request, "error.html", session, status=403, title="Refused", message=message)

    def not_found(self, request: Request, session: Session, message: str) -> Response:
        return self.render(request, "error.html", session, status=404, title="Not found", message=message)


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: a dashboard path on this site only (never another host)."""
    if target and target.startswith("/ui/") and not target.startswith("/ui//") and "\\" not in target:
        return target
    return "/ui/"


def safe_back(target: object, default: str) -> str:
    return safe_next(target if isinstance(target, str) else None) if target else default
