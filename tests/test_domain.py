"""The pure decisions of receiver.domain, tested once for every backend: known answers and properties."""

from __future__ import annotations

import errno
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openrouter_video import (
    ALL_STATUSES,
    TERMINAL_STATUSES,
    AuthenticationError,
    InsufficientStorageError,
    NotFoundError,
    OutputGoneError,
    RateLimitError,
    RetryPolicy,
    TransportError,
    UpstreamError,
    VideoJob,
)
from openrouter_video.receiver.domain.downloads import CONFLICT_RETRIES, plan_download_failure
from openrouter_video.receiver.domain.events import (
    MAX_STORED_KEY,
    plan_delivery,
    selftest_job_of,
    storable,
    storable_key,
)
from openrouter_video.receiver.domain.model import PollClaim
from openrouter_video.receiver.domain.pages import (
    DELIVERY_STATES,
    UNPROCESSED,
    check_delivery_state,
    decode_cursor,
    decode_delivery_cursor,
    encode_cursor,
)
from openrouter_video.receiver.domain.plan import (
    MAX_OUTPUTS_PER_JOB,
    JobState,
    plan_job_update,
    plan_not_found_upstream,
    plan_poll_schedule,
    plan_registration,
)
from openrouter_video.receiver.domain.polling import (
    MAX_NOT_FOUND,
    plan_before_poll,
    plan_poll_answer,
    plan_poll_failure,
)
from openrouter_video.receiver.domain.retention import DAY, Policy
from openrouter_video.receiver.domain.states import decide, rank

JOB = "gen-vid-1-abc"
BACKOFF = RetryPolicy(max_retries=5, initial=1.0, cap=8.0)
statuses = st.sampled_from(ALL_STATUSES) | st.text(min_size=1, max_size=8)


def job(status: str, **fields: object) -> VideoJob:
    return VideoJob.from_api({"id": JOB, "status": status, **fields})


def body(status: str, job_id: str = JOB, **fields: object) -> bytes:
    data = {"id": job_id, "status": status, **fields}
    return json.dumps({"type": f"video.generation.{status}", "data": data}).encode()


# -- the state machine -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "new", "decision"),
    [
        (None, "pending", "create"),
        (None, "completed", "create"),
        ("pending", "pending", "same"),
        ("pending", "in_progress", "advance"),
        ("pending", "completed", "advance"),
        ("in_progress", "pending", "stale"),
        ("in_progress", "surprise", "stale"),  # undocumented: ranks with pending, never pulls back
        ("completed", "in_progress", "stale"),
        ("completed", "failed", "conflict"),
        ("failed", "failed", "same"),
    ],
)
def test_decide_known_answers(current: str | None, new: str, decision: str) -> None:
    assert decide(current, new) == decision


@given(statuses, statuses)
def test_status_only_moves_forward_and_terminal_is_final(current: str, new: str) -> None:
    decision = decide(current, new)
    if decision == "advance":
        assert rank(new) > rank(current) and current not in TERMINAL_STATUSES
    if current in TERMINAL_STATUSES and new != current:
        assert decision in ("stale", "conflict")


# -- an upstream view of a job -----------------------------------------------------------------


def test_create_is_the_full_row_and_a_status_event() -> None:
    change = plan_job_update(None, job("in_progress", model="m/1"), source="webhook", now=10.0, delivery_id=7)
    assert change.created and not change.update and change.result is not None
    assert change.result.decision == "create" and change.result.previous is None
    assert change.create == {
        "id": JOB,
        "model": "m/1",
        "status": "in_progress",
        "created_at": 10.0,
        "first_seen_at": 10.0,
        "updated_at": 10.0,
        "terminal_at": None,
        "source": "webhook",
        "error": None,
        "cost": None,
        "generation_id": None,
        "upstream": {"id": JOB, "status": "in_progress", "model": "m/1"},
    }
    (event,) = change.events
    assert (event.kind, event.status, event.delivery_id, event.at) == ("status", "in_progress", 7, 10.0)


def test_advance_to_terminal_takes_upstream_values_keeps_the_model_and_stops_polling() -> None:
    current = JobState(
        "in_progress", model="mine", error="old", cost=None, next_poll_at=50.0, upstream={"a": 1, "b": 2}
    )
    update = job("completed", model="theirs", usage={"cost": 0.5}, generation_id="g1", b=None, c=3)
    change = plan_job_update(current, update, source="poll", now=20.0)
    assert change.update == {
        "status": "completed",
        "updated_at": 20.0,
        "source": "poll",
        "terminal_at": 20.0,
        # error: upstream said nothing, "old" is kept (unchanged columns are left out)
        "cost": 0.5,
        "generation_id": "g1",
        # model: kept ("mine"), so not in the update
        "upstream": {
            "a": 1,
            "b": 2,
            "id": JOB,
            "status": "completed",
            "model": "theirs",
            "usage": {"cost": 0.5},
            "generation_id": "g1",
            "c": 3,
        },
        "next_poll_at": None,
    }
    assert change.stops_polling and change.queue_outputs == (0,) and change.result.outputs_queued == 1


def test_same_only_fills_what_is_missing_and_records_no_event() -> None:
    current = JobState("failed", error="boom", cost=None, model=None, upstream={"id": JOB})
    change = plan_job_update(
        current, job("failed", error="other", usage={"cost": 1.0}, model="m"), source="webhook", now=5.0
    )
    assert change.result.decision == "same" and not change.events
    assert change.update["cost"] == 1.0 and change.update["model"] == "m"
    assert "error" not in change.update  # COALESCE(error, ?): the stored error stays


def test_nothing_new_is_an_empty_change() -> None:
    current = JobState("in_progress", upstream={"id": JOB, "status": "in_progress"})
    change = plan_job_update(current, job("in_progress"), source="webhook", now=5.0)
    assert change.empty and change.result.decision == "same"


@pytest.mark.parametrize(
    ("current", "new", "kind"), [("completed", "in_progress", "stale"), ("completed", "failed", "conflict")]
)
def test_stale_and_conflict_change_nothing_but_say_so(current: str, new: str, kind: str) -> None:
    change = plan_job_update(JobState(current), job(new, error="late"), source="webhook", now=1.0)
    assert not change.update and not change.queue_outputs and change.result.decision == kind
    (event,) = change.events
    assert (event.kind, event.status, event.detail) == (kind, new, f"current status is {current}")


def test_completed_queues_only_absent_outputs_and_caps_them_with_one_refusal_event() -> None:
    urls = [f"https://x/{i}" for i in range(MAX_OUTPUTS_PER_JOB + 4)]
    change = plan_job_update(None, job("completed", unsigned_urls=urls), source="webhook", now=1.0)
    assert change.queue_outputs == tuple(range(MAX_OUTPUTS_PER_JOB))
    assert [e.kind for e in change.events] == ["status", "outputs_refused"]
    assert "20 outputs announced" in change.events[1].detail and "other 4 refused" in change.events[1].detail
    again = plan_job_update(
        JobState("completed", outputs=frozenset(range(MAX_OUTPUTS_PER_JOB))),
        job("completed", unsigned_urls=urls),
        source="webhook",
        now=2.0,
    )
    assert again.queue_outputs == () and again.result.outputs_queued == 0 and not again.events
    partial = plan_job_update(
        JobState("completed", outputs=frozenset({0})),
        job("completed", unsigned_urls=urls[:3]),
        source="poll",
        now=3.0,
    )
    assert partial.queue_outputs == (1, 2)


@given(
    current=st.none()
    | st.builds(JobState, status=statuses, error=st.none() | st.text(), cost=st.none() | st.floats(0, 9)),
    new=statuses,
    error=st.none() | st.text(),
    outputs=st.integers(0, 40),
)
def test_upstream_view_properties(
    current: JobState | None, new: str, error: str | None, outputs: int
) -> None:
    urls = [f"https://x/{i}" for i in range(outputs)]
    change = plan_job_update(current, job(new, error=error, unsigned_urls=urls), source="webhook", now=1.0)
    decision = change.result.decision
    assert decision == decide(current.status if current else None, new)
    assert len(change.queue_outputs) == change.result.outputs_queued <= MAX_OUTPUTS_PER_JOB
    if decision in ("stale", "conflict"):
        assert not change.update and not change.create
    if current is not None and current.error is not None and decision != "advance":
        assert "error" not in change.update  # only an advance replaces a stored error
    for text in (change.create or {}).values():
        if isinstance(text, str):
            text.encode("utf-8")  # storable


def test_lone_surrogates_become_storable_text() -> None:
    assert storable("a\ud800b") == "a?b" and storable("ok") == "ok" and storable(None) is None
    change = plan_job_update(None, job("failed", error="bad \udcff"), source="webhook", now=1.0)
    assert change.create["error"] == "bad ?"


# -- registration and polling ------------------------------------------------------------------


def test_registration_creates_a_polled_pending_job_once() -> None:
    change = plan_registration(None, JOB, model="m", prompt="p", now=1.0, first_poll_at=301.0)
    assert change.created and change.create["registered"] is True and change.create["next_poll_at"] == 301.0
    assert [(e.kind, e.status) for e in change.events] == [("registered", "pending")]
    again = plan_registration(
        JobState("pending", registered=True, model="m", prompt="p", submitted_at=1.0, next_poll_at=301.0),
        JOB,
        model="m2",
        prompt=None,
        now=2.0,
        first_poll_at=302.0,
    )
    assert again.empty and not again.created


def test_registration_after_the_webhook_fills_in_and_schedules_unless_terminal() -> None:
    seen = JobState("in_progress", model=None)
    change = plan_registration(seen, JOB, model="m", prompt="p", now=2.0, first_poll_at=302.0)
    assert change.update == {
        "model": "m",
        "prompt": "p",
        "submitted_at": 2.0,
        "registered": True,
        "next_poll_at": 302.0,
    }
    assert [(e.kind, e.status) for e in change.events] == [("registered", None)]
    done = plan_registration(
        JobState("completed"), JOB, model=None, prompt=None, now=2.0, first_poll_at=302.0
    )
    assert "next_poll_at" not in done.update


def test_poll_schedule_never_polls_a_terminal_job_and_counts_attempts() -> None:
    assert plan_poll_schedule(JobState("pending", poll_attempts=2), JOB, 9.0).update == {
        "next_poll_at": 9.0,
        "poll_attempts": 3,
    }
    assert plan_poll_schedule(JobState("failed", next_poll_at=5.0), JOB, 9.0, attempted=False).update == {
        "next_poll_at": None
    }
    assert plan_poll_schedule(None, JOB, 9.0).empty


def test_not_found_upstream_keeps_the_status_and_a_stored_error() -> None:
    change = plan_not_found_upstream(JobState("pending", next_poll_at=5.0), JOB, detail="gone", now=3.0)
    assert change.update == {"next_poll_at": None, "error": "gone", "updated_at": 3.0}
    assert [e.kind for e in change.events] == ["not_found_upstream"]
    kept = plan_not_found_upstream(JobState("pending", error="earlier"), JOB, detail="gone", now=3.0)
    assert "error" not in kept.update
    assert plan_not_found_upstream(None, JOB, detail="gone", now=3.0).empty


def test_the_fallback_gives_up_by_age_counts_not_found_and_polls_until_terminal() -> None:
    claim = PollClaim(JOB, submitted_at=100.0, created_at=50.0, poll_attempts=0)
    assert plan_before_poll(claim, now=100.0 + 60, max_age=60) is None
    gave_up = plan_before_poll(claim, now=100.0 + 61, max_age=60)
    assert gave_up.next_at is None and not gave_up.attempted and gave_up.gave_up == "not terminal after 60s"
    not_found = NotFoundError("no", status_code=404)
    first = plan_poll_failure(not_found, attempts=0, now=0.0, backoff=BACKOFF, max_interval=99)
    assert first.next_at is not None and first.not_found_upstream is None
    last = plan_poll_failure(not_found, attempts=MAX_NOT_FOUND - 1, now=0.0, backoff=BACKOFF, max_interval=99)
    assert last.next_at is None and "404 to 3 polls" in last.not_found_upstream
    forbidden = plan_poll_failure(
        AuthenticationError("key", status_code=401), attempts=0, now=0.0, backoff=BACKOFF, max_interval=99
    )
    assert forbidden.next_at == 99 and forbidden.outcome == "forbidden"
    limited = plan_poll_failure(
        RateLimitError("slow", status_code=429, retry_after=40),
        attempts=0,
        now=0.0,
        backoff=BACKOFF,
        max_interval=99,
    )
    assert limited.next_at == 40 and limited.outcome == "error"
    assert plan_poll_answer(job("completed"), attempts=3, now=0.0, backoff=BACKOFF).next_at is None
    assert 0 < plan_poll_answer(job("in_progress"), attempts=0, now=0.0, backoff=BACKOFF).next_at <= 1.0


# -- a stored delivery -------------------------------------------------------------------------


def test_a_usable_event_is_applied() -> None:
    plan = plan_delivery(body("completed", model="m"))
    assert (plan.state, plan.job_id, plan.status, plan.event_type, plan.error) == (
        "applied",
        JOB,
        "completed",
        "video.generation.completed",
        None,
    )
    assert plan.job is not None and plan.job.model == "m"


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"\xff", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"type": "other.event", "data": {}}', "unknown webhook event type"),
        (body("completed", job_id="../../etc"), "is not a valid job id"),
    ],
)
def test_an_unusable_body_fails_with_the_reason(raw: bytes, error: str) -> None:
    plan = plan_delivery(raw)
    assert plan.state == "failed" and error in plan.error and plan.job is None


def test_a_selftest_never_makes_a_job() -> None:
    raw = body("failed", job_id="selftest-1-abcdef")
    plan = plan_delivery(raw)
    assert plan.state == "test" and plan.job is None and plan.job_id == "selftest-1-abcdef"
    assert selftest_job_of(raw) == "selftest-1-abcdef" and selftest_job_of(body("failed")) is None


@given(st.binary(max_size=200))
def test_any_body_gets_a_plan(raw: bytes) -> None:
    plan = plan_delivery(raw)
    assert (plan.state == "applied") == (plan.job is not None)
    assert (plan.state == "failed") == (plan.error is not None)


@given(st.text(min_size=1, max_size=400))
def test_stored_keys_are_whole_or_a_hash_of_the_whole(key: str) -> None:
    stored = storable_key(key)
    assert (
        stored == key if len(key) <= MAX_STORED_KEY else (stored.startswith("sha256:") and len(stored) == 71)
    )


# -- the download retry plan -------------------------------------------------------------------


def test_gone_and_forbidden_end_at_once_409_only_after_a_few() -> None:
    assert (
        plan_download_failure(
            OutputGoneError("gone", status_code=410), attempts=1, max_attempts=9, backoff=BACKOFF
        ).outcome
        == "gone"
    )
    assert (
        plan_download_failure(
            NotFoundError("no", status_code=404), attempts=1, max_attempts=9, backoff=BACKOFF
        ).outcome
        == "gone"
    )
    conflict = OutputGoneError("not yet", status_code=409)
    assert plan_download_failure(conflict, attempts=1, max_attempts=9, backoff=BACKOFF).outcome == "retry"
    assert (
        plan_download_failure(conflict, attempts=CONFLICT_RETRIES, max_attempts=9, backoff=BACKOFF).outcome
        == "gone"
    )
    forbidden = plan_download_failure(
        AuthenticationError("key", status_code=401), attempts=1, max_attempts=9, backoff=BACKOFF
    )
    assert forbidden.outcome == "failed" and forbidden.ends and forbidden.hint


def test_transient_errors_retry_with_backoff_until_attempts_run_out() -> None:
    error = UpstreamError("busy", status_code=503)
    retry = plan_download_failure(error, attempts=2, max_attempts=3, backoff=BACKOFF)
    assert retry.outcome == "retry" and retry.count_attempt and 1.0 <= retry.delay <= 2.0
    assert plan_download_failure(error, attempts=3, max_attempts=3, backoff=BACKOFF).outcome == "failed"
    slow = plan_download_failure(
        RateLimitError("slow", status_code=429, retry_after=30), attempts=1, max_attempts=3, backoff=BACKOFF
    )
    assert slow.delay == 30
    assert (
        plan_download_failure(TransportError("reset"), attempts=1, max_attempts=3, backoff=BACKOFF).outcome
        == "retry"
    )


def test_no_space_waits_without_using_up_attempts() -> None:
    plan = plan_download_failure(
        InsufficientStorageError(100, 5), attempts=99, max_attempts=3, backoff=BACKOFF, space_waits=40
    )
    assert plan.outcome == "waiting_for_space" and not plan.count_attempt and not plan.ends
    assert (
        plan.error == "waiting for disk space: need 100 bytes, 5 free above the floor"
        and plan.delay <= BACKOFF.cap
    )
    full = plan_download_failure(
        OSError(errno.ENOSPC, "No space left on device"),
        attempts=1,
        max_attempts=3,
        backoff=BACKOFF,
        free_above_floor=0,
    )
    assert (
        full.error
        == "waiting for disk space: the disk filled up (No space left on device), 0 free above the floor"
    )
    other = plan_download_failure(
        OSError(errno.EIO, "I/O error"), attempts=1, max_attempts=3, backoff=BACKOFF
    )
    assert other.outcome == "retry" and other.count_attempt


@given(
    attempts=st.integers(1, 30),
    max_attempts=st.integers(1, 30),
    status=st.sampled_from([500, 502, 503, 409, 404, 410]),
)
def test_a_retry_plan_either_ends_or_waits_a_bounded_time(
    attempts: int, max_attempts: int, status: int
) -> None:
    error = (OutputGoneError if status in (409, 410) else NotFoundError if status == 404 else UpstreamError)(
        "x", status_code=status
    )
    plan = plan_download_failure(error, attempts=attempts, max_attempts=max_attempts, backoff=BACKOFF)
    assert plan.ends or 0 < plan.delay <= BACKOFF.cap
    if attempts >= max_attempts:
        assert plan.ends


# -- retention ---------------------------------------------------------------------------------


def test_retention_cutoffs() -> None:
    policy = Policy(video_days=2, delivery_days=0.5)
    assert policy.video_cutoff(10 * DAY) == 8 * DAY and policy.record_cutoff(10 * DAY) is None
    assert policy.delivery_cutoff(DAY) == DAY / 2 and not policy.empty and Policy().empty
    assert "over 2 days ago" in policy.video_deleted_reason()


# -- listings ----------------------------------------------------------------------------------


@given(st.floats(0, 2e9), st.text(min_size=1, max_size=40).filter(lambda t: storable(t) == t))
def test_a_job_cursor_round_trips(created_at: float, job_id: str) -> None:
    assert decode_cursor(encode_cursor(created_at, job_id)) == (created_at, job_id)


@pytest.mark.parametrize("cursor", ["", "x", "MTIz", "WzEwKio0MDAsICJhIl0", "²"])
def test_a_cursor_no_listing_returned_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError):
        decode_cursor(cursor)
    with pytest.raises(ValueError, match="bad cursor"):
        decode_delivery_cursor(cursor)


def test_delivery_state_filters() -> None:
    assert DELIVERY_STATES == ("pending", "applied", "failed", "test") and UNPROCESSED not in DELIVERY_STATES
    check_delivery_state(UNPROCESSED)
    with pytest.raises(ValueError, match="state must be one of"):
        check_delivery_state("nope")
