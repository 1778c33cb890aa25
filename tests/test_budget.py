"""The spending cap (RECEIVER_BUDGET_USD_PER_DAY / _PER_MONTH) on submits through the receiver, over
real HTTP against the simulator: the submit that would cross the cap is a 402 that pays nothing;
running jobs count at their estimate and completed ones at their real cost; two racing submits never
both pass a cap only one fits (SQLite and PostgreSQL); GET /usage and `openrouter-video usage` show
the same figures."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from dashboard_support import csrf_of, http_session
from receiver_support import API_TOKEN, AUTH, public_receiver, receiver_settings, wait_until
from support import RunningSimulator

from openrouter_video._cli import cli
from openrouter_video.receiver.domain.budget import (
    SpendFact,
    counted,
    period_bounds,
)

VEO = "google/veo-3.1"
# $0.20/s without audio at 720p: $0.80, and the simulator keeps it running (pending for 10 minutes).
RUNNING = {
    "model": VEO,
    "prompt": "a red fox in fresh snow [sim:pending=600]",
    "duration": 4,
    "resolution": "720p",
    "generate_audio": False,
}


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "postgres":
        return {"database_url": request.getfixturevalue("pg_url")}
    return {}


@contextlib.contextmanager
def capped(tmp_path, simulator: RunningSimulator, **overrides: Any) -> Iterator[Any]:
    settings = receiver_settings(str(tmp_path / "data"), simulator, **overrides)
    with public_receiver(settings) as receiver:
        yield receiver


def submit(receiver: Any, key: str, body: dict[str, Any]) -> httpx.Response:
    headers = {**AUTH, "Idempotency-Key": key}
    return httpx.post(f"{receiver.url}/jobs", json=body, headers=headers, timeout=30)


def upstream_submits(simulator: RunningSimulator) -> int:
    return httpx.get(f"{simulator.admin_url}/stats", timeout=10).json()["requests"].get("submits", 0)


def usage(receiver: Any, **params: Any) -> dict[str, Any]:
    answer = receiver.get("/usage", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_submit_that_would_cross_the_daily_cap_is_refused_and_pays_nothing(
    tmp_path, simulator, store
) -> None:
    with capped(tmp_path, simulator, budget_usd_per_day=2.0, **store) as receiver:
        assert submit(receiver, "cap-1", RUNNING).status_code == 201
        second = submit(receiver, "cap-2", RUNNING)
        assert second.status_code == 201 and second.json()["estimated_cost"] == pytest.approx(0.8)
        third = submit(receiver, "cap-3", RUNNING)
        assert third.status_code == 402, third.text
        message = third.json()["error"]["message"]
        for figure in ("daily cap", "$2.00", "UTC day", "$1.60 is spent", "estimated at $0.80"):
            assert figure in message, message
        assert "\n" not in message
        assert upstream_submits(simulator) == 2  # the refused one paid nothing
        assert receiver.get("/submissions/cap-3").status_code == 404  # and nothing was kept

        shown = usage(receiver)
        [row] = shown["rows"]
        today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        assert (row["day"], row["model"], row["token"], row["jobs"]) == (today, VEO, "admin", 2)
        assert row["estimated_usd"] == pytest.approx(1.6) and row["actual_usd"] == 0
        assert row["counted_usd"] == pytest.approx(1.6) and shown["counted_usd"] == pytest.approx(1.6)
        [cap] = shown["caps"]
        assert (cap["period"], cap["cap_usd"], cap["token"]) == ("day", 2.0, None)
        assert cap["spent_usd"] == pytest.approx(1.6) and cap["remaining_usd"] == pytest.approx(0.4)
        assert shown["unknown_cost"] == "refuse"

        # `openrouter-video usage` prints the same figures, as a table and as JSON.
        env = {"RECEIVER_URL": receiver.url, "RECEIVER_API_TOKEN": API_TOKEN, "RECEIVER_DATA_DIR": None}
        table = CliRunner().invoke(cli, ["usage"], env=env, catch_exceptions=False)
        assert table.exit_code == 0, table.output
        assert f"{today}  {VEO}  admin  2" in table.output and "$1.60" in table.output
        assert "daily cap: $2.00, spent $1.60, remaining $0.40" in table.output
        as_json = CliRunner().invoke(cli, ["usage", "--days", "1", "--json"], env=env, catch_exceptions=False)
        assert as_json.exit_code == 0, as_json.output
        assert json.loads(as_json.output)["caps"] == shown["caps"]


def test_completed_jobs_count_at_their_real_cost_and_running_ones_at_their_estimate(
    tmp_path, simulator
) -> None:
    # No duration: estimated at the longest (8 s x $0.40 with audio open = $3.20, an upper bound);
    # the simulator makes the shortest (4 s) and reports usage.cost $1.60.
    open_ended = {"model": VEO, "prompt": "a heron at dawn", "resolution": "720p"}
    with capped(tmp_path, simulator, budget_usd_per_day=5.0) as receiver:
        first = submit(receiver, "real-1", open_ended)
        assert first.status_code == 201 and first.json()["estimated_cost"] == pytest.approx(3.2)
        job_id = first.json()["job_id"]
        wait_until(
            lambda: receiver.job(job_id).get("cost") is not None, timeout=30, what="the job's real cost"
        )
        assert receiver.job(job_id)["cost"] == pytest.approx(1.6)
        # At its estimate the first would leave $1.80: this one ($3.20, kept running) fits only
        # because the completed job counts at its real $1.60.
        running = {**open_ended, "prompt": "a heron at dusk [sim:pending=600]"}
        assert submit(receiver, "real-2", running).status_code == 201
        over = submit(receiver, "real-3", RUNNING)
        assert over.status_code == 402
        assert "$4.80 is spent" in over.json()["error"]["message"]  # $1.60 real + $3.20 estimated

        shown = usage(receiver, days=1)
        assert shown["estimated_usd"] == pytest.approx(6.4) and shown["actual_usd"] == pytest.approx(1.6)
        assert shown["counted_usd"] == pytest.approx(4.8)
        assert shown["caps"][0]["remaining_usd"] == pytest.approx(0.2)
        assert upstream_submits(simulator) == 2


def test_two_racing_submits_that_fit_only_one_at_a_time_pass_once(tmp_path, simulator, store) -> None:
    simulator.config.faults.submit_latency = 0.3  # both are checked while the first is in flight
    with capped(tmp_path, simulator, budget_usd_per_day=1.0, **store) as receiver:
        for round_ in range(3):
            keys = [f"race-{round_}-{n}" for n in range(2)]
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(lambda key: submit(receiver, key, RUNNING), keys))
            statuses = sorted(a.status_code for a in answers)
            assert statuses == ([201, 402] if round_ == 0 else [402, 402]), [a.text for a in answers]
        assert upstream_submits(simulator) == 1


def test_a_cost_that_cannot_be_estimated_is_refused_under_a_cap_unless_allowed(tmp_path, simulator) -> None:
    tokens = {"model": "bytedance/seedance-2.0", "prompt": "a kite", "duration": 4, "resolution": "720p"}
    with capped(tmp_path / "refuse", simulator, budget_usd_per_month=100.0) as receiver:
        refused = submit(receiver, "tok-1", tokens)
        assert refused.status_code == 402
        message = refused.json()["error"]["message"]
        assert "cannot be estimated" in message and "video token" in message
        assert "RECEIVER_BUDGET_UNKNOWN_COST=allow" in message
        assert upstream_submits(simulator) == 0
    with capped(
        tmp_path / "allow", simulator, budget_usd_per_month=100.0, budget_unknown_cost="allow"
    ) as receiver:
        allowed = submit(receiver, "tok-2", tokens)
        assert allowed.status_code == 201 and allowed.json()["estimated_cost"] is None
        assert usage(receiver)["unknown_cost"] == "allow"
        assert upstream_submits(simulator) == 1


def test_the_dashboards_submit_page_shows_the_refusal_on_the_form(tmp_path, simulator) -> None:
    choices = {"model": VEO, "duration": "6", "resolution": "1080p", "aspect_ratio": "16:9", "audio": "on"}
    with capped(tmp_path, simulator, budget_usd_per_day=1.0) as receiver:
        with http_session(receiver.url, API_TOKEN) as client:
            csrf = csrf_of(client.get(f"/ui/submit?model={VEO}").text)
            pay = {"csrf": csrf, "key": "ui-cap-1", **choices, "prompt": "a fox"}
            answer = client.post("/ui/submit/pay", data=pay)
        assert answer.status_code == 402 and 'id="submit-form"' in answer.text  # the form, to change
        [error] = re.findall(r'<p class="error" role="alert" id="form-error">([^<]*)</p>', answer.text)
        assert "daily cap is $1.00" in error and "estimated at $2.40" in error
        assert upstream_submits(simulator) == 0


def test_usage_refuses_a_bad_window(tmp_path, simulator) -> None:
    with capped(tmp_path, simulator) as receiver:
        assert usage(receiver)["caps"] == []
        for params, words in (
            ({"days": "0"}, "days must be between"),
            ({"days": "x"}, "days must be a whole number"),
            ({"days": "2", "since": "2026-01-01"}, "either days or since/until"),
            ({"since": "tomorrow"}, "since must be unix seconds or ISO-8601"),
            ({"since": "2026-02-01", "until": "2026-01-01"}, "until must be after since"),
        ):
            answer = receiver.get("/usage", params=params)
            assert answer.status_code == 400 and words in answer.json()["error"]["message"], answer.text
        assert httpx.get(f"{receiver.url}/usage", timeout=10).status_code == 401


def test_periods_are_utc_calendar_days_and_months() -> None:
    at = datetime(2026, 12, 31, 23, 59, tzinfo=timezone.utc).timestamp()
    day, month = period_bounds("day", at), period_bounds("month", at)
    assert day == (datetime(2026, 12, 31, tzinfo=timezone.utc).timestamp(), at + 60)
    assert month == (datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp(), at + 60)
    feb = period_bounds("month", datetime(2028, 2, 10, tzinfo=timezone.utc).timestamp())
    assert feb[1] == datetime(2028, 3, 1, tzinfo=timezone.utc).timestamp()


def test_what_counts_toward_a_cap() -> None:
    def fact(state: Any, status: Any = None, cost: Any = None, estimate: Any = 2.0) -> SpendFact:
        return SpendFact(0.0, VEO, "admin" if state else None, state, estimate, status, cost)

    assert counted(fact("submitting")) == 2.0
    assert counted(fact("outcome_unknown")) == 2.0
    assert counted(fact("refused")) == 0.0
    assert counted(fact("submitted", "in_progress")) == 2.0
    assert counted(fact("submitted", "completed", cost=1.25)) == 1.25
    assert counted(fact("submitted", "failed")) == 0.0
    assert counted(fact("submitted", "cancelled", cost=0.5)) == 0.5  # charged anyway: counted
    assert counted(fact("submitted", "pending", estimate=None)) == 0.0  # allowed with no estimate
    assert counted(fact(None, "completed", cost=3.0, estimate=None)) == 3.0  # a webhook-only job
    assert counted(fact(None, "in_progress", estimate=None)) == 0.0
