"""The dashboard's Submit page: a form built from the model catalog, a review with the estimated cost
and the exact request, and the paid submit, through the same code as `POST /jobs`.

- `GET /ui/submit?model=` renders the form for that model (`&partial=1`: its fields only, for the
  script that swaps them when the model changes); `POST /ui/submit` renders it again with the values
  posted (another model chosen without JavaScript, or "Change" on the review).
- `POST /ui/submit/review` checks the request as `POST /jobs` would (`prepare_submit`, the model's
  catalog entry), estimates its cost, and renders the review with a new Idempotency-Key in the form.
- `POST /ui/submit/pay` submits under that key (`Submitter.submit`): the same form posted twice (a
  double-click, a resent form) is one submission and one upstream job. It lands on the job, or on the
  submission's page when upstream refused it or its outcome is unknown.

Every POST goes through `Pages.page`, which refuses another site's request and a wrong CSRF token.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response

from openrouter_video import ValidationError, VideoModel
from openrouter_video._pricing import estimate_cost
from openrouter_video._validation import unknown_model_error

from ..contract import ContractError
from ..domain.budget import OverBudget
from ..domain.submissions import REFUSED, SUBMITTED, check_idempotency_key
from ..state import ReceiverState, state_of
from ..storage.base import StoreUnavailable
from ..submit_request import prepare_submit
from ..submitting import CannotSubmit, KeyReused
from . import data
from .auth import Session
from .pages import Pages, read_form
from .submit_form import Draft, choices_for, field_of

log = structlog.get_logger("receiver.ui")

KEY_PREFIX = "ui-"  # a dashboard submission's Idempotency-Key, told apart from an API caller's


class SubmitPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    # -- the form ------------------------------------------------------------------------------

    async def form(self, request: Request, session: Session) -> Response:
        state = state_of(request)
        if not data.can_submit(state):
            return self._unavailable(request, session)
        if request.method == "POST":
            draft = Draft.read((await read_form(request)).get)
        else:
            draft = Draft.read(request.query_params.get)
        partial = request.method == "GET" and request.query_params.get("partial") == "1"
        return await self._form_page(request, session, draft, {}, partial=partial)

    async def _form_page(
        self,
        request: Request,
        session: Session,
        draft: Draft,
        errors: dict[str, str],
        *,
        partial: bool = False,
        status: int = 200,
    ) -> Response:
        try:
            models = await data.catalog(state_of(request))
        except CannotSubmit as exc:
            return self.pages.render(
                request, "error.html", session, status=503, title="Submit", message=f"{exc}; try again later."
            )
        if not models:
            return self.pages.render(
                request,
                "error.html",
                session,
                status=503,
                title="Submit",
                message="The model catalog is empty.",
            )
        chosen = _chosen(models, draft.get("model"), errors)
        choices = choices_for(chosen)
        context: dict[str, Any] = {
            "models": sorted(models, key=lambda m: m.id),
            "choices": choices,
            "values": draft.fitted(choices).values,
            "errors": errors,
        }
        template = "_submit_fields.html" if partial else "submit.html"
        return self.pages.render(request, template, session, status=status, **context)

    # -- review --------------------------------------------------------------------------------

    async def review(self, request: Request, session: Session) -> Response:
        state = state_of(request)
        if not data.can_submit(state):
            return self._unavailable(request, session)
        draft = Draft.read((await read_form(request)).get)
        checked = await self._checked(state, draft)
        if isinstance(checked, dict):
            return await self._form_page(request, session, draft, checked)
        entry, body = checked
        return self._review_page(request, session, draft, entry, body, KEY_PREFIX + secrets.token_hex(16))

    def _review_page(
        self,
        request: Request,
        session: Session,
        draft: Draft,
        entry: VideoModel,
        body: dict[str, Any],
        key: str,
        error: str | None = None,
    ) -> Response:
        state = state_of(request)
        return self.pages.render(
            request,
            "submit_review.html",
            session,
            model=entry,
            values=draft.values,
            estimate=estimate_cost(entry, body),
            request_json=json.dumps(body, indent=2, ensure_ascii=False),
            callback_url=state.settings.callback_url,
            key=key,
            error=error,
        )

    # -- pay -----------------------------------------------------------------------------------

    async def pay(self, request: Request, session: Session) -> Response:
        state = state_of(request)
        if not data.can_submit(state):
            return self._unavailable(request, session)
        form = await read_form(request)
        draft = Draft.read(form.get)
        try:
            key = check_idempotency_key(form.get("key"))
        except ValueError as exc:
            return await self._form_page(request, session, draft, {"form": f"{exc}; review again"})
        body, errors = draft.payload()
        if errors:
            return await self._form_page(request, session, draft, errors)
        try:
            fields, upstream_body = prepare_submit(body)
            submitted = await data.submit(state, key, fields, upstream_body, who=session.who)
        except (ContractError, ValidationError) as exc:
            name, message = field_of(exc)
            return await self._form_page(request, session, draft, {name: message})
        except KeyReused as exc:
            return await self._form_page(request, session, draft, {"form": f"{exc}; review again"})
        except OverBudget as exc:  # the form again: a shorter or cheaper job may fit the cap
            return await self._form_page(request, session, draft, {"form": str(exc)}, status=402)
        except (CannotSubmit, StoreUnavailable) as exc:
            checked = await self._checked(state, draft)  # shown again under the same key: retrying is safe
            if isinstance(checked, dict):
                return await self._form_page(request, session, draft, {"form": str(exc), **checked})
            return self._review_page(request, session, draft, *checked, key=key, error=str(exc))
        record = submitted.record
        log.info(
            "ui.submit",
            submission=record.id,
            state=record.state,
            job_id=record.job_id,
            created=submitted.created,
        )
        again = "" if submitted.created else " (this form was already submitted: nothing was paid twice)"
        if record.state == SUBMITTED and record.job_id:
            return self.pages.redirect_with(
                request, f"/ui/jobs/{record.job_id}", f"Submitted to {record.model}{again}."
            )
        message = {
            REFUSED: f"OpenRouter refused the submission{again}.",
        }.get(record.state, f"The outcome of the submission is not known yet{again}.")
        return self.pages.redirect_with(request, f"/ui/submissions/{record.id}", message)

    # -- a submission --------------------------------------------------------------------------

    async def submission(self, request: Request, session: Session) -> Response:
        state = state_of(request)
        ref = request.path_params["ref"]
        record = await data.get_submission(state, ref)
        if record is None:
            return self.pages.not_found(
                request, session, f"There is no submission {ref[:200]!r} on this receiver."
            )
        return self.pages.render(request, "submission.html", session, submission=record)

    # -- shared --------------------------------------------------------------------------------

    async def _checked(
        self, state: ReceiverState, draft: Draft
    ) -> tuple[VideoModel, dict[str, Any]] | dict[str, str]:
        """(the model's entry, the upstream body) when `POST /jobs` would accept these values; else an
        error per field (one line each)."""
        body, errors = draft.payload()
        if errors:
            return errors
        try:
            _fields, upstream_body = prepare_submit(body)
            return await data.check_submit(state, upstream_body), upstream_body
        except (ContractError, ValidationError) as exc:
            name, message = field_of(exc)
            return {name: message}
        except CannotSubmit as exc:
            return {"form": str(exc)}

    def _unavailable(self, request: Request, session: Session) -> Response:
        return self.pages.render(
            request,
            "error.html",
            session,
            status=503,
            title="Submit is unavailable",
            message=UNAVAILABLE,
        )


UNAVAILABLE = (
    "This receiver cannot submit jobs: RECEIVER_PUBLIC_URL is not set, so it has no webhook URL to give "
    "OpenRouter. Set it and restart the receiver."
)


def _chosen(models: list[VideoModel], wanted: str, errors: dict[str, str]) -> VideoModel:
    """The model asked for; an unknown one is named in `errors` and the first model is shown."""
    by_id = {m.id: m for m in models}
    normalized = wanted[len("openrouter/") :] if wanted.startswith("openrouter/") else wanted
    if normalized in by_id:
        return by_id[normalized]
    if wanted and "model" not in errors:
        errors["model"] = unknown_model_error(wanted[:200], by_id).message
    return models[0]
