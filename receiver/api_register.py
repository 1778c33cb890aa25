"""`POST /jobs` with `{"id": ...}`: track a job submitted elsewhere (registration).

The job is polled as a fallback from then on. A job registered with an app's token becomes that
token's if it has no owner yet; one another app owns answers 404, as if it did not exist (an app
cannot learn which ids exist). With RECEIVER_VERIFY_REGISTRATIONS, a new id is checked upstream.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from starlette.requests import Request
from starlette.responses import Response

from openrouter_video import (
    JOB_ID_RULE,
    AsyncOpenRouterVideo,
    NotFoundError,
    OpenRouterVideoError,
    is_valid_job_id,
)

from . import contract
from .api import _json, read_json_object
from .api_notifications import NotifyUrlRefused, accept_notify_url
from .auth import principal_of
from .contract import ContractError, present_job
from .errors import error_response
from .state import state_of

log = structlog.get_logger("receiver.api")


async def register_job(request: Request) -> Response:
    s = state_of(request)
    payload = await read_json_object(request, '{"id": ..., "model": ..., "prompt": ...}')
    if not is_valid_job_id(payload.get("id")):
        return error_response(400, f"id must be a job id ({JOB_ID_RULE})")
    try:
        registration = contract.parse(payload, contract.Registration)
    except ContractError as exc:
        return error_response(400, str(exc))
    job_id, model, prompt = registration.id, registration.model, registration.prompt
    for name, value in (("model", model), ("prompt", prompt)):
        if value is not None and not _is_utf8(value):
            return error_response(400, f"{name} must be valid Unicode text (it has a lone surrogate escape)")
    principal = principal_of(request)
    try:
        notify_url = await accept_notify_url(s.settings, registration.notify_url, owner=principal.owner)
    except NotifyUrlRefused as exc:
        return error_response(exc.status, exc.message)
    note = None
    known = await s.stores.jobs.get(job_id)
    if known is not None and not principal.sees(known.owner) and known.owner is not None:
        return error_response(404, f"no job {job_id!r}")  # another app's: as if it did not exist
    if s.settings.verify_registrations and known is None:
        refusal, note = await _check_upstream(s.client, job_id)
        if refusal is not None:
            return error_response(400, refusal)
    created = await s.stores.jobs.register(
        job_id,
        model=model,
        prompt=prompt,
        first_poll_at=time.time() + s.settings.fallback_after,
        owner=principal.owner,  # taken only if the job has no owner yet
        notify_url=notify_url,
    )
    log.info("job.registered", job_id=job_id, new=created, upstream=note or "found")
    if created and note is not None:
        await s.stores.jobs.add_event(job_id, "submit", "upstream_unchecked", note)
    stored = await s.stores.jobs.get(job_id)
    # deleted between the two calls (by an admin, say), or another app registered it meanwhile
    if stored is None or not principal.sees(stored.owner):
        return error_response(404, f"no job {job_id!r}")
    return _json(contract.shape(present_job(stored), contract.Job), status=201 if created else 200)


# How long registering waits for upstream's answer before tracking the job unchecked.
UPSTREAM_CHECK_TIMEOUT = 10.0


async def _check_upstream(client: AsyncOpenRouterVideo, job_id: str) -> tuple[str | None, str | None]:
    """(refusal, note): a refusal when upstream says the job does not exist; a note when upstream
    could not be asked (the job is tracked anyway and the fallback decides)."""
    try:
        await asyncio.wait_for(client.get(job_id), timeout=UPSTREAM_CHECK_TIMEOUT)
    except NotFoundError:
        return f"no job {job_id!r} upstream: OpenRouter answered 404 for it (check the id)", None
    except (OpenRouterVideoError, asyncio.TimeoutError) as exc:
        return None, f"upstream not checked at registration: {str(exc)[:200] or type(exc).__name__}"
    return None, None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
