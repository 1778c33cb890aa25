"""The dashboard's pages and actions: sign-in, the jobs table, a job, its video, the operations page,
reprocess and retry, and the live stream. Server-rendered HTML (Jinja2, autoescaped) through
`pages.Pages`, which adds the security headers, sessions and CSRF checks. What a page shows comes
from `receiver.ui.data` and nothing else.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import structlog
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from openrouter_video import ALL_STATUSES

from ..domain.tokens import BUILTIN_ADMIN, Principal
from ..settings import Settings
from ..state import state_of
from ..storage.base import StoreUnavailable
from . import data
from .auth import Session, same_origin
from .live import LiveHub
from .pages import Pages, read_form, safe_back, safe_next

log = structlog.get_logger("receiver.ui")

PAGE_SIZE = 50
MAX_SEARCH = 200
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INDEX = re.compile(r"^[0-9]{1,6}$")


class Dashboard(Pages):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.hub = LiveHub()

    # -- sign-in -------------------------------------------------------------------------------

    async def signin_form(self, request: Request) -> Response:
        if self.sessions.open_access or await self._valid_session(request) is not None:
            return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
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
            next=safe_next(next_path or request.query_params.get("next")),
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
        given = token.strip() if isinstance(token, str) else ""
        try:
            who = await self._token_signing_in(request, address, given)
        except StoreUnavailable:
            return self._signin_page(request, "The token store is unavailable: try again.", 503, target)
        if who is None:
            log.warning("ui.signin", outcome="wrong_token", client=address)
            return self._signin_page(
                request, "That token is not this receiver's API token.", 200, target
            )  # a form shown again (a 4xx would be a console error)
        if not who.is_admin:
            log.warning("ui.signin", outcome="not_admin", client=address, token=who.name)
            return self._signin_page(
                request,
                f"The token {who.name!r} has role {who.role}: the dashboard is an operator tool, "
                "open to RECEIVER_API_TOKEN and tokens with role admin only.",
                403,
                target,
            )
        log.info("ui.signin", outcome="ok", client=address, token=who.name)
        _session, value = self.sessions.new(who.name)
        response = RedirectResponse(safe_next(target), status_code=303)
        self.sessions.set_cookie(response, request, value)
        return response

    async def _token_signing_in(self, request: Request, address: str, given: str) -> Principal | None:
        """Whose token this is (None: none of this receiver's; counted as a failed sign-in)."""
        if self.sessions.is_builtin(given):  # RECEIVER_API_TOKEN
            return BUILTIN_ADMIN
        principal = await state_of(request).auth.resolve(given, state_of(request).stores.tokens)
        if principal is None:
            self.sessions.note_failure(address)  # throttled as a wrong RECEIVER_API_TOKEN is
        return principal

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
        back = safe_back((await read_form(request)).get("back"), f"/ui/jobs/{job_id}")
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
        return self.redirect_with(request, safe_back(form.get("back"), "/ui/ops"), message)

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
