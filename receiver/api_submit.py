"""`POST /jobs` and `GET /submissions/{id or key}`: submitting through the receiver, exactly once.

`POST /jobs` is two things, told apart by the body: `{"id": ...}` tracks a job submitted elsewhere
(`api_register.register_job`, as before); any other body is a paid submit, OpenRouter's `POST /videos` body,
which needs an `Idempotency-Key` header (`receiver.submitting` does the rest). Keys are the calling
token's own: two apps using the same key make two submissions. The answers:

- 201 submitted now, 200 the same key again (the same submission, the same job);
- 202 `outcome_unknown` (or still `submitting` on another replica): see `GET /submissions/{id}`;
- the upstream refusal's status (400, 402, 404, 413, 422, 429; 502 when upstream refused the
  receiver's own key) with the submission, for the first call and every retry of its key;
- 400 a bad body, a `notify_url` the receiver may not POST to (private address, credentials, ...),
  or one the model's catalog entry rules out (naming the field, the value and what is
  allowed), 402 over a spending cap (the cap, its period, the spend so far and this job's estimate;
  nothing is kept), 409 the key used for another request, 503 nothing could be sent (nothing is kept;
  or a `notify_url` was given and the receiver has no RECEIVER_NOTIFY_SECRET to sign with).
"""

from __future__ import annotations

from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response

from openrouter_video import ValidationError

from . import api, api_register, contract
from .api_notifications import NotifyUrlRefused, accept_notify_url
from .auth import principal_of
from .contract import ContractError, present_submission
from .domain.budget import OverBudget
from .domain.model import SubmissionRecord
from .domain.submissions import REFUSED, SUBMITTED, check_idempotency_key
from .errors import error_response
from .state import ReceiverState, state_of
from .storage.base import StoreUnavailable
from .submit_request import prepare_submit
from .submitting import CannotSubmit, KeyReused

log = structlog.get_logger("receiver.api")

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
# Upstream refusals answered with upstream's own status; any other (401/403: upstream refused the
# receiver's API key, which is not the caller's doing) is a 502.
_PASSED_THROUGH = frozenset({400, 402, 404, 413, 422, 429})


async def post_jobs(request: Request) -> Response:
    payload = await api.read_json_object(
        request, 'OpenRouter\'s POST /videos body, or {"id": ...} to track a job'
    )
    if "id" in payload:
        return await api_register.register_job(request)  # the body is cached: read again there
    return await submit_job(request, payload)


async def submit_job(request: Request, payload: dict[str, Any]) -> Response:
    s = state_of(request)
    try:
        key = check_idempotency_key(request.headers.get(IDEMPOTENCY_KEY_HEADER))
    except ValueError as exc:
        return error_response(400, str(exc))
    try:
        # A receiver field, never sent upstream: kept with the submission, then the job.
        principal = principal_of(request)
        notify_url = await accept_notify_url(
            s.settings, payload.pop("notify_url", None), owner=principal.owner
        )
        fields, upstream_body = prepare_submit(payload)
        submitted = await s.submitter.submit(
            key, fields, upstream_body, principal=principal, notify_url=notify_url
        )
    except NotifyUrlRefused as exc:
        return error_response(exc.status, exc.message)
    except ContractError as exc:
        return error_response(400, str(exc))
    except ValidationError as exc:
        return error_response(400, exc.message, field=exc.field, allowed=_allowed(exc.allowed))
    except OverBudget as exc:
        return error_response(402, str(exc))
    except KeyReused as exc:
        return error_response(409, str(exc))
    except (CannotSubmit, StoreUnavailable) as exc:
        return error_response(503, str(exc))
    return await _answer(s, submitted.record, created=submitted.created)


async def get_submission(request: Request) -> Response:
    s = state_of(request)
    ref = request.path_params["ref"]
    principal = principal_of(request)
    # By id (shown only to its owner or an admin), or by key in the caller's own key namespace.
    record = await s.stores.submissions.get(ref, owner=principal.owner)
    if record is None or not principal.sees(record.owner):
        return error_response(404, f"no submission with id or Idempotency-Key {ref[:200]!r}")
    return _json(await _shown(s, record), 200)


def _allowed(allowed: Any) -> list[Any] | None:
    if allowed is None:
        return None
    return [a if isinstance(a, (str, int, float, bool)) else str(a) for a in allowed]


async def _shown(s: ReceiverState, record: SubmissionRecord) -> contract.Submission:
    job = await s.stores.jobs.get(record.job_id) if record.job_id else None
    return contract.shape(present_submission(record, job), contract.Submission)


async def _answer(s: ReceiverState, record: SubmissionRecord, *, created: bool) -> Response:
    shown = await _shown(s, record)
    if record.state == REFUSED:
        upstream = record.upstream_status
        status = upstream if upstream in _PASSED_THROUGH else 502
        message = f"OpenRouter refused the submission (HTTP {upstream}): {record.error}"
        envelope = contract.ErrorEnvelope(contract.ErrorDetail(status, message, submission=shown))
        return _json(envelope, status)
    if record.state == SUBMITTED:
        return _json(shown, 201 if created else 200)
    return _json(shown, 202)  # outcome_unknown, or still submitting on another replica


def _json(value: object, status: int) -> Response:
    return Response(contract.encode(value), status_code=status, media_type="application/json")
