"""Submitting through the receiver, exactly once: what a submission is and what may happen to it.

Pure decisions, shared by every backend. A submission is recorded (`submitting`) and committed
*before* the paid call upstream; what upstream answered then moves it once:

    submitting ──> submitted        upstream created the job (its id is kept, the job is tracked)
               ──> refused          upstream clearly said no (a 4xx): nothing was created
               ──> outcome_unknown  no clear answer (timeout after sending, 5xx, dropped connection),
                                    or the receiver stopped before it learned the answer
    outcome_unknown ──> submitted   the job's webhook arrived carrying this submission's reference

Nothing here ever leads to a second upstream call for one key: `outcome_unknown` is final but for
the webhook that ties it back. A submit that provably never left the receiver (connection refused)
is forgotten instead (`may_forget`), so the same key can be tried again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from openrouter_video import APIError, TransportError

from .model import SubmissionRecord, SubmissionState
from .plan import JobChange, JobState, NewEvent, plan_registration

SUBMITTING: SubmissionState = "submitting"
SUBMITTED: SubmissionState = "submitted"
OUTCOME_UNKNOWN: SubmissionState = "outcome_unknown"
REFUSED: SubmissionState = "refused"
SUBMISSION_STATES: tuple[SubmissionState, ...] = (SUBMITTING, SUBMITTED, OUTCOME_UNKNOWN, REFUSED)

SUBMISSION_ID_PATTERN = r"^sub_[0-9a-f]{24}$"
_SUBMISSION_ID = re.compile(SUBMISSION_ID_PATTERN)
# The query parameter of the callback URL that names the submission (a link, never a credential).
SUBMISSION_PARAM = "submission"
MAX_KEY_CHARS = 200
_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces: what fits a header and a log line
KEY_RULE = f"1 to {MAX_KEY_CHARS} printable ASCII characters without spaces (e.g. a UUID)"
# Upstream statuses that are not a clear refusal although they are 4xx: the request may have been
# acted on (408 request timeout, 499 client closed request).
_AMBIGUOUS_4XX = frozenset({408, 499})

ABANDONED = (
    "the receiver stopped (or lost track of the call) between recording this submission and learning "
    "upstream's answer; it is never resubmitted automatically: if a job was created, its webhook "
    "ties it back here"
)


def new_submission_id() -> str:
    return f"sub_{secrets.token_hex(12)}"


def is_submission_id(ref: str) -> bool:
    return _SUBMISSION_ID.fullmatch(ref) is not None


def check_idempotency_key(key: str | None) -> str:
    """The key as given, or ValueError with the rule."""
    if key is None or not key.strip():
        raise ValueError(
            "an Idempotency-Key header is required to submit (the same key on a retry returns the same "
            f"job instead of paying twice): {KEY_RULE}"
        )
    key = key.strip()
    if not _KEY.fullmatch(key):
        raise ValueError(f"Idempotency-Key must be {KEY_RULE}")
    return key


def fingerprint(upstream_body: dict[str, Any]) -> str:
    """What identifies a request: the upstream body as built (model id normalized, frames unified),
    keys sorted, without the callback URL (the receiver sets it)."""
    body = {k: v for k, v in upstream_body.items() if k != "callback_url"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def new_submission(
    key: str,
    upstream_body: dict[str, Any],
    *,
    submission_id: str,
    now: float,
    estimated_cost: float | None = None,
    owner: str | None = None,
    notify_url: str | None = None,
) -> SubmissionRecord:
    prompt = upstream_body.get("prompt")
    return SubmissionRecord(
        id=submission_id,
        idempotency_key=key,
        fingerprint=fingerprint(upstream_body),
        state=SUBMITTING,
        model=str(upstream_body["model"]),
        prompt=prompt if isinstance(prompt, str) else None,
        job_id=None,
        upstream_status=None,
        error=None,
        created_at=now,
        updated_at=now,
        estimated_cost=estimated_cost,
        owner=owner,
        notify_url=notify_url,
    )


# -- what upstream answered ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the upstream call came to: a job id, a clear refusal, or an unknown outcome."""

    state: SubmissionState  # SUBMITTED, REFUSED or OUTCOME_UNKNOWN
    job_id: str | None = None
    upstream_status: int | None = None
    error: str | None = None


def outcome_of_failure(exc: BaseException) -> Outcome:
    """Classify a failed upstream submit: only a clear 4xx refusal is `refused`; anything that may
    have created a job (a timeout after sending, a 5xx, a dropped connection, a garbled answer, an
    error of our own) is `outcome_unknown`."""
    detail = (str(exc) or type(exc).__name__)[:500]
    if isinstance(exc, APIError) and 400 <= exc.status_code < 500 and exc.status_code not in _AMBIGUOUS_4XX:
        return Outcome(REFUSED, upstream_status=exc.status_code, error=exc.message or detail)
    status = exc.status_code if isinstance(exc, APIError) else None
    return Outcome(OUTCOME_UNKNOWN, upstream_status=status, error=detail)


def may_forget(exc: BaseException) -> bool:
    """True when the submit provably never reached upstream (nothing listening): nothing can have
    been created, so the submission is dropped and the same key may be tried again."""
    return isinstance(exc, TransportError) and not exc.request_sent


def plan_outcome(current: SubmissionRecord, outcome: Outcome, now: float) -> SubmissionRecord | None:
    """The submission after `outcome`, or None when it does not apply (only a `submitting` one takes
    an outcome; an `outcome_unknown` one only the job that ties it back)."""
    if current.state == SUBMITTING or (current.state == OUTCOME_UNKNOWN and outcome.state == SUBMITTED):
        return dataclasses.replace(
            current,
            state=outcome.state,
            job_id=outcome.job_id,
            upstream_status=outcome.upstream_status,
            error=outcome.error if outcome.state != SUBMITTED else None,
            updated_at=now,
        )
    return None


def plan_link(
    current: SubmissionRecord, job_id: str, job_model: str | None, now: float
) -> SubmissionRecord | None:
    """A webhook that carried this submission's reference: ties an undecided submission to its job.

    The reference comes from the callback URL's query string, which the webhook signature does not
    cover: it may only link a submission still waiting for its job, to a job of the same model. It
    never changes a decided one, and grants nothing else."""
    if current.job_id is not None or current.state not in (SUBMITTING, OUTCOME_UNKNOWN):
        return None
    if job_model is not None and job_model != current.model:
        return None
    return plan_outcome(current, Outcome(SUBMITTED, job_id=job_id), now)


def plan_abandoned(current: SubmissionRecord, now: float) -> SubmissionRecord | None:
    """A `submitting` submission whose caller is gone (the receiver restarted, or the call outlived
    every deadline): its outcome is unknown; it is never resubmitted."""
    if current.state != SUBMITTING:
        return None
    return plan_outcome(current, Outcome(OUTCOME_UNKNOWN, error=ABANDONED), now)


def plan_submitted_job(
    current: JobState | None,
    submission: SubmissionRecord,
    *,
    how: str,
    now: float,
    first_poll_at: float,
) -> JobChange:
    """The job of a submission that reached `submitted`: tracked as a registered one (the polling
    fallback covers it from the start), with an event naming the submission."""
    assert submission.job_id is not None
    change = plan_registration(
        current,
        submission.job_id,
        model=submission.model,
        prompt=submission.prompt,
        now=now,
        first_poll_at=first_poll_at,
        owner=submission.owner,
        notify_url=submission.notify_url,
    )
    event = NewEvent(now, "submit", "submission", None, f"{submission.id} ({how})")
    return dataclasses.replace(change, events=(*change.events, event))
