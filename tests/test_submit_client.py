"""The client's side of submitting through the receiver: `ReceiverClient.submit`, its async twin, and
`openrouter-video submit --via-receiver URL`, over real HTTP to a receiver in front of the simulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from receiver_support import API_TOKEN, public_receiver, receiver_settings
from support import RunningSimulator

from openrouter_video import (
    AsyncReceiverClient,
    IdempotencyKeyReused,
    ReceiverClient,
    SubmissionOutcomeUnknown,
    ValidationError,
)
from openrouter_video._cli import cli

VEO = "google/veo-3.1"


@pytest.fixture
def receiver(tmp_path, simulator: RunningSimulator) -> Iterator[Any]:
    with public_receiver(receiver_settings(str(tmp_path / "data"), simulator)) as running:
        yield running


def upstream_jobs(simulator: RunningSimulator) -> int:
    return int(httpx.get(f"{simulator.admin_url}/stats", timeout=10).json()["jobs"])


def test_receiver_client_submits_once_per_key(receiver, simulator) -> None:
    with ReceiverClient(receiver.url, API_TOKEN) as rx:
        first = rx.submit("a fox", model=VEO, duration=4, idempotency_key="client-1")
        assert first["state"] == "submitted" and first["job"]["id"] == first["job_id"]
        again = rx.submit("a fox", model=VEO, duration=4, idempotency_key="client-1")
        assert again["job_id"] == first["job_id"]
        other = rx.submit("a fox", model=VEO, duration=4)  # a key of its own: a new job
        assert other["job_id"] != first["job_id"]
        assert upstream_jobs(simulator) == 2
        with pytest.raises(IdempotencyKeyReused):
            rx.submit("another fox", model=VEO, duration=4, idempotency_key="client-1")
        with pytest.raises(ValidationError) as refused:  # the receiver's catalog check, nothing sent
            rx.submit("a fox", model=VEO, duration=5)
        assert refused.value.field == "duration" and refused.value.allowed == (4, 6, 8)
        assert rx.submission("client-1")["id"] == first["id"]
        assert upstream_jobs(simulator) == 2


def test_a_timeout_is_retried_with_the_same_key(receiver, simulator, monkeypatch) -> None:
    simulator.config.faults.submit_latency = 1.5  # longer than the client waits for an answer
    monkeypatch.setattr("openrouter_video._receiver_api.SUBMIT_TIMEOUT", httpx.Timeout(0.5))
    with ReceiverClient(receiver.url, API_TOKEN) as rx:
        submission = rx.submit("a slow fox", model=VEO, duration=4, retries=8)
    assert submission["state"] == "submitted"
    assert upstream_jobs(simulator) == 1  # every timed-out try was the same submission


def test_async_client_and_an_unknown_outcome(receiver, simulator) -> None:
    simulator.config.faults.update({"submit_disconnects": 1, "disconnect_creates_job": True})

    async def go() -> None:
        async with AsyncReceiverClient(receiver.url, API_TOKEN) as rx:
            with pytest.raises(SubmissionOutcomeUnknown) as unknown:
                await rx.submit("a fox", model=VEO, duration=4, idempotency_key="async-1")
            assert "async-1" in str(unknown.value)
            ok = await rx.submit("a fox", model=VEO, duration=6, idempotency_key="async-2")
            assert ok["state"] == "submitted"
            assert (await rx.job(ok["job_id"]))["registered"]

    asyncio.run(go())
    assert upstream_jobs(simulator) == 2


def test_cli_submit_via_receiver(receiver, simulator) -> None:
    env = {"RECEIVER_API_TOKEN": API_TOKEN, "OPENROUTER_API_KEY": None, "RECEIVER_URL": None}
    args = ["submit", "a red fox", "-m", VEO, "--duration", "4", "--via-receiver", receiver.url]
    result = CliRunner().invoke(cli, [*args, "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    submission = json.loads(result.stdout)
    assert submission["state"] == "submitted" and "Idempotency-Key" in result.stderr
    key = submission["idempotency_key"]
    # The same key again (a resumed invocation) pays nothing more.
    again = CliRunner().invoke(cli, [*args, "--idempotency-key", key], env=env, catch_exceptions=False)
    assert again.exit_code == 0 and again.stdout.strip() == submission["job_id"]
    assert upstream_jobs(simulator) == 1
    bad = CliRunner().invoke(cli, [*args[:-4], "--duration", "5", *args[-2:]], env=env)
    assert bad.exit_code == 2 and "duration" in bad.stderr and "Traceback" not in bad.output
    assert upstream_jobs(simulator) == 1


def test_cli_submit_via_receiver_waits_until_the_video_is_stored(receiver, simulator) -> None:
    env = {"RECEIVER_API_TOKEN": API_TOKEN, "OPENROUTER_API_KEY": None, "RECEIVER_URL": None}
    args = ["submit", "a red fox", "-m", VEO, "--duration", "4", "--via-receiver", receiver.url, "--wait"]
    result = CliRunner().invoke(cli, [*args, "--timeout", "60", "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["status"] == "completed" and [o["state"] for o in record["outputs"]] == ["done"]
    failed = CliRunner().invoke(cli, ["submit", "[sim:outcome=failed] a storm", *args[2:]], env=env)
    assert failed.exit_code == 1 and "failed" in failed.stderr, failed.output
    refused = CliRunner().invoke(cli, [*args, "-o", "fox.mp4"], env=env)
    assert refused.exit_code == 2 and "no -o" in refused.stderr


def test_notify_url_is_the_receivers_field_and_callback_url_is_refused() -> None:
    from openrouter_video._receiver_submit import SubmitPlan

    plan = SubmitPlan.build(
        "a fox", model=VEO, idempotency_key="k", retries=0, duration=4, notify_url="https://app.example/v"
    )
    assert plan.body["notify_url"] == "https://app.example/v" and plan.body["duration"] == 4
    with pytest.raises(TypeError, match="callback_url is set by the receiver"):
        SubmitPlan.build("a fox", model=VEO, idempotency_key="k", retries=0, callback_url="https://x/")
    result = CliRunner().invoke(cli, ["submit", "a fox", "-m", VEO, "--notify-url", "https://app.example/v"])
    assert result.exit_code == 2 and "--notify-url go with --via-receiver" in result.output
