"""Paid submits through the receiver, exactly once per idempotency key.

`Submitter.submit` (called by `POST /jobs` with an `Idempotency-Key`):

1. a key already stored answers what it came to, whatever the retry (a different request under it:
   `KeyReused`); a submit still under way is waited for, here or on another replica;
2. a new request is checked against the model's catalog entry (fetched through the client, cached
   for its TTL) before anything is paid, and its cost estimated from the model's pricing; under a
   spending cap (`receiver.domain.budget`) one that would cross it is refused (`OverBudget`);
3. the submission (with its estimate) is committed as `submitting` BEFORE the upstream call, the
   cap checked in the same transaction; a crash after that leaves it
   `submitting`, which the next start turns into `outcome_unknown` (never resubmitted);
4. the upstream call runs in a task of its own (a caller that hangs up does not cut it short), with
   `callback_url` set to the receiver's own webhook URL naming the submission, so an ambiguous
   failure is tied back when the job's webhook arrives; its outcome is stored as the domain decides.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import structlog

from openrouter_video import (
    AsyncOpenRouterVideo,
    OpenRouterVideoError,
    ValidationError,
    VideoModel,
    is_valid_job_id,
)
from openrouter_video._pricing import CostEstimate, estimate_cost
from openrouter_video._validation import check_capabilities

from .domain.budget import BudgetCheck, Cap, OverBudget, unknown_cost_refusal
from .domain.model import SubmissionRecord
from .domain.submissions import (
    OUTCOME_UNKNOWN,
    SUBMISSION_PARAM,
    SUBMITTED,
    SUBMITTING,
    Outcome,
    fingerprint,
    may_forget,
    new_submission,
    new_submission_id,
    outcome_of_failure,
)
from .domain.tokens import BUILTIN_ADMIN, Principal
from .settings import Settings
from .storage.base import Stores

log = structlog.get_logger("receiver.submit")

# The upstream call's own bound: past it, the outcome is unknown (the job may still appear).
UPSTREAM_SUBMIT_TIMEOUT = 60.0
# A submission `submitting` for longer than this has lost its caller (a crashed process or replica):
# every live call ends within UPSTREAM_SUBMIT_TIMEOUT, and its outcome is stored right after.
ABANDON_AFTER = 2 * UPSTREAM_SUBMIT_TIMEOUT


class KeyReused(Exception):
    """The idempotency key was used before with another request (409)."""


class CannotSubmit(Exception):
    """Nothing was paid, nothing is kept: the catalog or upstream could not be reached, or the
    receiver has no public URL to give as callback (503, one line)."""


@dataclass(frozen=True)
class Submitted:
    """What a submit came to: the submission as stored, and whether this call created it."""

    record: SubmissionRecord
    created: bool


class Submitter:
    def __init__(self, stores: Stores, client: AsyncOpenRouterVideo, settings: Settings) -> None:
        self._stores = stores
        self._client = client
        self._settings = settings
        self._calls: dict[str, asyncio.Task[SubmissionRecord]] = {}  # submission id -> its upstream call
        self._catalog_lock = asyncio.Lock()  # one catalog fetch when many submits find the cache cold

    async def recover(self) -> int:
        """At start: `submitting` ones left by a stopped process become `outcome_unknown`. SQLite under
        the data-dir lock: all of them (the previous run is known dead); replicas: the stale ones."""
        older_than = None if self._stores.exclusive else time.time() - ABANDON_AFTER
        count = await self._stores.submissions.abandon(older_than)
        if count:
            log.warning("submissions.abandoned", count=count, state=OUTCOME_UNKNOWN)
        return count

    async def submit(
        self,
        key: str,
        request: dict[str, Any],
        upstream_body: dict[str, Any],
        *,
        principal: Principal = BUILTIN_ADMIN,
        notify_url: str | None = None,
    ) -> Submitted:
        """`request`: the client's keyword arguments (validated into `upstream_body` by the caller).
        `principal`: who asks; the submission and its job are recorded as its own, its key is looked
        up in its own namespace, and its own caps apply besides the receiver-wide ones.
        `notify_url`: where the job's end is told (checked by the caller; the first submit of a key
        decides it, as it decides the job)."""
        owner = principal.owner
        stored = await self._stores.submissions.get(key, by_key=True, owner=owner)
        if stored is None:
            entry = await self.check(upstream_body)
            estimate = estimate_cost(entry, upstream_body)
            budget = self._budget_check(estimate, principal)
            callback = self._settings.callback_url
            if callback is None:
                raise CannotSubmit(
                    "RECEIVER_PUBLIC_URL is not set: the receiver cannot give OpenRouter its webhook URL; "
                    "nothing was submitted"
                )
            new = new_submission(
                key,
                upstream_body,
                submission_id=new_submission_id(),
                now=time.time(),
                estimated_cost=estimate.usd,
                owner=owner,
                notify_url=notify_url,
            )
            # durable before any payment; under a cap, checked against it in the same transaction
            stored, created = await self._stores.submissions.begin(new, budget)
            if created:
                call = asyncio.create_task(self._call_upstream(stored, request, callback))
                self._calls[stored.id] = call
                call.add_done_callback(lambda _: self._calls.pop(stored.id, None))
                return Submitted(await asyncio.shield(call), created=True)
        if stored.fingerprint != fingerprint(upstream_body):
            raise KeyReused(
                f"Idempotency-Key {key!r} was used for another request (submission {stored.id}); "
                "use a new key for a new request"
            )
        return Submitted(await self._settled(stored), created=False)

    def _budget_check(self, estimate: CostEstimate, principal: Principal) -> BudgetCheck | None:
        """What the store checks the caps with (None: no cap set): the receiver-wide caps and the
        token's own. A job whose cost cannot be estimated is refused here under a cap, unless
        RECEIVER_BUDGET_UNKNOWN_COST=allow (then it counts 0 until its real cost is known)."""
        caps = (*(Cap(period, usd) for period, usd in self._settings.budget_caps), *principal.caps)
        if not caps:
            return None
        if estimate.usd is None and self._settings.budget_unknown_cost != "allow":
            raise OverBudget(unknown_cost_refusal(estimate.model, estimate.reason))
        # The spend facts name the built-in admin's submissions `admin` (domain.budget.spender).
        return BudgetCheck(caps, estimate.usd or 0.0, owner=principal.name, now=time.time())

    async def catalog(self) -> list[VideoModel]:
        """Every model of the catalog (fetched through the client, cached for its TTL); CannotSubmit
        when it cannot be fetched. The dashboard's Submit form is built from it."""
        try:
            async with self._catalog_lock:
                return await self._client.models()
        except OpenRouterVideoError as exc:
            raise CannotSubmit(f"the model catalog could not be fetched ({exc})") from None

    async def check(self, body: dict[str, Any]) -> VideoModel:
        """The model's catalog entry, once it allows `body`: ValidationError when it rules the request
        out (an unknown model too), CannotSubmit when the catalog cannot be fetched."""
        try:
            async with self._catalog_lock:
                entry = await self._client.model(body["model"])
        except ValidationError:
            raise
        except OpenRouterVideoError as exc:
            raise CannotSubmit(
                f"the model catalog could not be fetched ({exc}); nothing was submitted"
            ) from None
        check_capabilities(body, entry)
        return entry

    async def _call_upstream(
        self, record: SubmissionRecord, request: dict[str, Any], callback: str
    ) -> SubmissionRecord:
        callback_url = f"{callback}?{SUBMISSION_PARAM}={record.id}"
        try:
            job = await asyncio.wait_for(
                self._client.submit(validate=False, callback_url=callback_url, **request),
                UPSTREAM_SUBMIT_TIMEOUT,
            )
        except asyncio.TimeoutError:
            outcome = Outcome(
                OUTCOME_UNKNOWN, error=f"no answer from upstream within {UPSTREAM_SUBMIT_TIMEOUT:.0f} s"
            )
        except Exception as exc:  # every failure is classified; none may leave the submission undecided
            if may_forget(exc):
                await self._stores.submissions.forget(record.id)
                log.warning("submission.unsent", submission=record.id, error=str(exc))
                raise CannotSubmit(
                    f"OpenRouter could not be reached ({exc}); nothing was sent, retry"
                ) from None
            if not isinstance(exc, OpenRouterVideoError):
                log.exception("submission.crashed", submission=record.id)
            outcome = outcome_of_failure(exc)
        else:
            if is_valid_job_id(job.id):
                outcome = Outcome(SUBMITTED, job_id=job.id)
            else:
                outcome = Outcome(
                    OUTCOME_UNKNOWN, error=f"upstream answered with an unusable job id {job.id[:100]!r}"
                )
        stored = await self._stores.submissions.finish(
            record.id, outcome, first_poll_at=time.time() + self._settings.fallback_after
        )
        log.info(
            "submission.answered",
            submission=record.id,
            state=stored.state if stored else outcome.state,
            job_id=outcome.job_id,
            upstream_status=outcome.upstream_status,
        )
        return stored or record

    async def _settled(self, stored: SubmissionRecord) -> SubmissionRecord:
        """The submission once no call is under way for it: this process's own call is awaited, another
        replica's is watched in the store (until it outlives every deadline: then it is abandoned)."""
        call = self._calls.get(stored.id)
        if call is not None:
            return await asyncio.shield(call)
        delay = 0.05
        while stored.state == SUBMITTING:
            if time.time() - stored.created_at > ABANDON_AFTER:
                await self._stores.submissions.abandon(time.time() - ABANDON_AFTER)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            again = await self._stores.submissions.get(stored.id)
            if again is None:  # forgotten: its call provably never reached upstream
                raise CannotSubmit("OpenRouter could not be reached; nothing was sent, retry")
            stored = again
        return stored
