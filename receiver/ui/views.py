"""The dashboard's pages and actions: server-rendered HTML (Jinja2, autoescaped), a session on each.

Every page answers with a strict Content-Security-Policy (scripts, styles and media from this origin
only, no inline code, no framing), `nosniff`, `Referrer-Policy: same-origin` and `Cache-Control:
no-store`. Every state-changing request is a POST from a same-origin form with the session's CSRF
token. What a page shows comes from `receiver.ui.data` and nothing else.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
import structlog
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openrouter_video import ALL_STATUSES, TERMINAL_STATUSES

from ..settings import Settings
from ..state import state_of
from . import data
from .auth import Session, Sessions, same_origin
from .format import FILTERS
from .live import LiveHub

log = structlog.get_logger("receiver.ui")

HERE = os.path.dirname(os.path.abspath(__file__))
STATIC_DIR = os.path.join(HERE, "static")
PAGE_SIZE = 50
MAX_SEARCH = 200
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
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INDEX = re.compile(r"^[0-9]{1,6}$")


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


class Dashboard:
    def __init__(self, settings: Settings) -> None:
        self.sessions = Sessions(settings)
        self.hub = LiveHub()
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
            session = self.sessions.read(request)
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

    # -- sign-in -------------------------------------------------------------------------------

    async def signin_form(self, request: Request) -> Response:
        if self.sessions.open_access or self.sessions.read(request) is not None:
            return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
        return self._signin_page(request)

    def _signin_page(
        self, request: Request, error: str | None = None, status: int = 200, next_path: str | None = None
    ) -> Response:
        nonce, fresh = self.sessions.signin_nonce(request)
        response = self.render(
            request,
            "signin.html",
            None,
            status=status,
            error=error,
            nonce=nonce,
            next=_safe_next(next_path or request.query_params.get("next")),
            signed_out=request.query_params.get("signed_out") == "1",
        )
        if fresh:
            self.sessions.set_signin_cookie(response, request, nonce)
        return response

    async def signin(self, request: Request) -> Response:
        if self.sessions.open_access:
            return RedirectResponse("/ui/", status_code=303)
        address = request.client.host if request.client else "unknown"
        if not same_origin(request):
            log.warning("ui.signin", outcome="cross_site", client=address)
            return self.refuse(request, None, "This sign-in came from another site and was refused.")
        form = await read_form(request)
        target = form.get("next")
        nonce = request.cookies.get("orv_signin", "")
        given_nonce = form.get("nonce")
        if not nonce or not isinstance(given_nonce, str) or given_nonce != nonce:
            log.warning("ui.signin", outcome="bad_form_token", client=address)
            return self._signin_page(request, "The sign-in form expired: please try again.", 403, target)
        wait = self.sessions.retry_after(address)
        if wait:
            log.warning("ui.signin", outcome="throttled", client=address, retry_after=wait)
            response = self._signin_page(
                request, f"Too many failed sign-ins: try again in {wait} s.", 429, target
            )
            response.headers["Retry-After"] = str(wait)
            return response
        token = form.get("token")
        if not isinstance(token, str) or not self.sessions.check_token(address, token.strip()):
            log.warning("ui.signin", outcome="wrong_token", client=address)
            return self._signin_page(
                request, "That token is not this receiver's API token.", 200, target
            )  # a form shown again (a 4xx would be a console error)
        log.info("ui.signin", outcome="ok", client=address)
        _session, value = self.sessions.new()
        response = RedirectResponse(_safe_next(target), status_code=303)
        self.sessions.set_cookie(response, request, value)
        return response

    async def signout(self, request: Request, session: Session) -> Response:
        response = RedirectResponse("/ui/signin?signed_out=1", status_code=303)
        self.sessions.clear_cookie(response, request)
        log.info("ui.signout", client=request.client.host if request.client else None)
        return response

    # -- jobs ----------------------------------------------------------------------------------

    async def jobs(self, request: Request, session: Session) -> Response:
        state = state_of(request)
        q = request.query_params
        problems: list[str] = []
        status = q.get("status") or None
        if status is not None and status not in ALL_STATUSES:
            problems.append(f"unknown status {status[:40]!r}")
            status = None
        model = (q.get("model") or "").strip()[:200] or None
        search = " ".join((q.get("q") or "").split())[:MAX_SEARCH] or None
        since = _day(q.get("since"), problems, "from")
        until = _day(q.get("until"), problems, "to")
        query = data.JobQuery(
            status=status,
            model=model,
            since=since,
            until=until + 86400 if until is not None else None,  # the "to" day is included
            search=search,
            cursor=q.get("cursor") or None,
            newer=q.get("dir") == "newer",
            limit=PAGE_SIZE,
        )
        try:
            page = await data.list_jobs(state, query)
        except ValueError:
            problems.append("that page link is not valid any more; showing the newest jobs")
            query = data.JobQuery(**{**query.__dict__, "cursor": None, "newer": False})
            page = await data.list_jobs(state, query)
        filters = {
            "status": status or "",
            "model": model or "",
            "q": search or "",
            "since": q.get("since", "") if since is not None else "",
            "until": q.get("until", "") if until is not None else "",
        }
        base = {k: v for k, v in filters.items() if v}
        exact = await data.find_job(state, search) if search else None
        context: dict[str, Any] = {
            "page": page,
            "filters": filters,
            "filtered": bool(base),
            "problems": problems,
            "exact": exact,
            "older_url": "/ui/?" + urlencode({**base, "cursor": page.older}) if page.older else None,
            "newer_url": "/ui/?" + urlencode({**base, "cursor": page.newer, "dir": "newer"})
            if page.newer
            else None,
            "first_url": "/ui/?" + urlencode(base) if query.cursor else None,
            "on_first_page": query.cursor is None,
            "live_url": "/ui/?"
            + urlencode(
                {
                    **base,
                    **({"cursor": query.cursor} if query.cursor else {}),
                    **({"dir": "newer"} if query.newer else {}),
                    "partial": "1",
                }
            ),
        }
        if q.get("partial") == "1":
            return self.render(request, "_jobs_table.html", session, **context)
        return self.render(request, "jobs.html", session, models=await data.list_models(state), **context)

    async def job(self, request: Request, session: Session) -> Response:
        job_id = request.path_params["job_id"]
        view = await data.get_job(state_of(request), job_id)
        if view is None:
            return self.not_found(request, session, f"There is no job {job_id[:200]!r} on this receiver.")
        template = "_job_live.html" if request.query_params.get("partial") == "1" else "job.html"
        return self.render(request, template, session, view=view, job=view.record)

    async def content(self, request: Request, session: Session) -> Response:
        job_id = request.path_params["job_id"]
        raw = request.query_params.get("index", "0")
        if not _INDEX.match(raw):
            return Response("index must be a whole number", status_code=400, media_type="text/plain")
        response = await data.content_response(
            state_of(request),
            job_id,
            int(raw),
            request.headers,
            download=request.query_params.get("download") == "1",
        )
        if response is None:
            return Response("this output is not downloaded", status_code=404, media_type="text/plain")
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response

    async def retry_output(self, request: Request, session: Session) -> Response:
        job_id = request.path_params["job_id"]
        raw = request.path_params["index"]
        back = _safe_back((await read_form(request)).get("back"), f"/ui/jobs/{job_id}")
        if not _INDEX.match(raw):
            return self.redirect_with(request, back, "That output index is not valid.")
        was = await data.retry_output(state_of(request), job_id, int(raw))
        log.info("ui.retry_output", job_id=job_id, output=int(raw), was=was)
        if was is None:
            message = f"Output {raw} of {job_id} is not one to retry (it is downloading, done or gone from the records)."
        else:
            message = f"Output {raw} of {job_id} will be downloaded again now (it was {was}; attempts reset)."
        return self.redirect_with(request, back, message)

    # -- operations ----------------------------------------------------------------------------

    async def ops(self, request: Request, session: Session) -> Response:
        state = state_of(request)
        return self.render(
            request,
            "ops.html",
            session,
            health=await data.health(state),
            deliveries=await data.unprocessed_deliveries(state),
            outputs=await data.outputs_needing_attention(state),
        )

    async def reprocess(self, request: Request, session: Session) -> Response:
        form = await read_form(request)
        raw_ids = [v for v in form.getlist("id") if isinstance(v, str)]
        ids = [int(v) for v in raw_ids if v.isascii() and v.isdigit() and len(v) <= 18]
        if raw_ids and not ids:
            return self.redirect_with(request, "/ui/ops", "No valid delivery id was given.")
        results = await data.reprocess(state_of(request), ids or None)
        applied = sum(r.applied for r in results)
        log.info("ui.reprocess", ids=ids or "all", count=len(results), applied=applied)
        if not results:
            message = "Nothing to reprocess: every delivery named was already applied."
        else:
            failed = [r for r in results if not r.applied]
            message = (
                f"Reprocessed {len(results)} deliver{'y' if len(results) == 1 else 'ies'}: {applied} applied"
            )
            if failed:
                message += f", {len(failed)} still not applied ({failed[0].error})"
            message += "."
        return self.redirect_with(request, _safe_back(form.get("back"), "/ui/ops"), message)

    # -- live ----------------------------------------------------------------------------------

    async def events(self, request: Request, session: Session) -> Response:
        if self.hub.full():
            return Response(
                "too many live pages open; retrying",
                status_code=503,
                headers={"Retry-After": "5"},
                media_type="text/plain",
            )
        return StreamingResponse(
            self.hub.stream(state_of(request), until=session.expires),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


def _day(raw: str | None, problems: list[str], name: str) -> float | None:
    if not raw:
        return None
    if not _DATE.match(raw):
        problems.append(f"the {name} date must be YYYY-MM-DD")
        return None
    try:
        return datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        problems.append(f"the {name} date {raw!r} is not a date")
        return None


def _safe_next(target: str | None) -> str:
    """Where to go after sign-in: a dashboard path on this site only (never another host)."""
    if target and target.startswith("/ui/") and not target.startswith("/ui//") and "\\" not in target:
        return target
    return "/ui/"


def _safe_back(target: object, default: str) -> str:
    return _safe_next(target if isinstance(target, str) else None) if target else default
