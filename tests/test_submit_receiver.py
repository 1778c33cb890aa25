"""Submitting through the receiver (`POST /jobs` with an Idempotency-Key), over real HTTP against the
simulator, on SQLite and on PostgreSQL: one key is one paid submit, however it is retried."""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from receiver_support import AUTH, ReceiverProcess, free_port, public_receiver, receiver_settings, wait_until
from support import RunningSimulator

VEO = "google/veo-3.1"
BODY = {"model": VEO, "prompt": "a red fox in fresh snow", "duration": 4, "resolution": "720p"}


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings overrides for each record store."""
    if request.param == "postgres":
        return {"database_url": request.getfixturevalue("pg_url")}
    return {}


@contextlib.contextmanager
def receiver_for(tmp_path, simulator: RunningSimulator, store: dict[str, Any]) -> Iterator[Any]:
    settings = receiver_settings(str(tmp_path / "data"), simulator, **store)
    with public_receiver(settings) as receiver:
        yield receiver


def submit(
    receiver: Any, key: str, body: dict[str, Any] | None = None, timeout: float = 30
) -> httpx.Response:
    headers = {**AUTH, "Idempotency-Key": key}
    return httpx.post(f"{receiver.url}/jobs", json=body or BODY, headers=headers, timeout=timeout)


def upstream(simulator: RunningSimulator) -> tuple[int, int]:
    """(submit requests the simulator received, jobs it made)."""
    stats = httpx.get(f"{simulator.admin_url}/stats", timeout=10).json()
    return stats["requests"].get("submits", 0), stats["jobs"]


def test_fifty_concurrent_retries_of_one_key_make_one_upstream_job(tmp_path, simulator, store) -> None:
    simulator.config.faults.submit_latency = 0.5  # every retry arrives while the first is in flight
    with receiver_for(tmp_path, simulator, store) as receiver:
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(lambda _: submit(receiver, "fox-1"), range(50)))
        assert sorted({a.status_code for a in answers}) == [200, 201], [a.text for a in answers[:3]]
        assert [a.status_code for a in answers].count(201) == 1
        job_ids = {a.json()["job_id"] for a in answers}
        submission_ids = {a.json()["id"] for a in answers}
        assert len(job_ids) == 1 and len(submission_ids) == 1 and None not in job_ids
        assert upstream(simulator) == (1, 1)
        [job_id] = job_ids

        later = submit(receiver, "fox-1")  # a retry long after: the same job, nothing sent
        assert later.status_code == 200 and later.json()["job_id"] == job_id
        assert upstream(simulator) == (1, 1)

        record = receiver.job(job_id)
        assert record["registered"] and record["prompt"] == BODY["prompt"] and record["model"] == VEO
        assert "submission" in [e["kind"] for e in record["events"]]  # the job names its submission
        shown = receiver.get(f"/submissions/{submission_ids.pop()}").json()
        assert shown["state"] == "submitted" and shown["job_id"] == job_id
        assert receiver.get("/submissions/fox-1").json()["id"] == shown["id"]  # by key too
        receiver.wait_downloaded(job_id, timeout=30)


def test_same_key_with_another_body_is_a_conflict(tmp_path, simulator, store) -> None:
    with receiver_for(tmp_path, simulator, store) as receiver:
        first = submit(receiver, "fox-2")
        assert first.status_code == 201, first.text
        other = submit(receiver, "fox-2", {**BODY, "duration": 8})
        assert other.status_code == 409
        assert "fox-2" in other.json()["error"]["message"]
        same = submit(
            receiver, "fox-2", {**BODY, "model": f"openrouter/{VEO}"}
        )  # same request, said otherwise
        assert same.status_code == 200 and same.json()["job_id"] == first.json()["job_id"]
        assert upstream(simulator) == (1, 1)


def test_ambiguous_failure_is_outcome_unknown_until_the_webhook_ties_it_back(
    tmp_path, simulator, store
) -> None:
    # The simulator creates the job, then drops the connection without an answer.
    simulator.config.faults.update({"submit_disconnects": 1, "disconnect_creates_job": True})
    with receiver_for(tmp_path, simulator, store) as receiver:
        first = submit(receiver, "fox-3")
        assert first.status_code == 202, first.text
        unknown = first.json()
        assert unknown["state"] == "outcome_unknown" and unknown["job_id"] is None and unknown["error"]
        retried = submit(receiver, "fox-3")  # never resubmitted
        assert retried.status_code in (200, 202) and retried.json()["id"] == unknown["id"]
        assert upstream(simulator) == (1, 1)
        [sim_job] = httpx.get(f"{simulator.admin_url}/jobs", timeout=10).json()["data"]

        tied = wait_until(
            lambda: (lambda s: s if s["state"] == "submitted" else None)(
                receiver.get(f"/submissions/{unknown['id']}").json()
            ),
            timeout=20,
            what="the webhook to tie the submission to its job",
        )
        assert tied["job_id"] == sim_job["id"] and tied["job"]["id"] == sim_job["id"]
        assert tied["job"]["prompt"] == BODY["prompt"]
        again = submit(receiver, "fox-3")
        assert again.status_code == 200 and again.json()["job_id"] == sim_job["id"]
        assert upstream(simulator) == (1, 1)


def test_a_refusal_is_kept_and_answered_again_for_its_key(tmp_path, simulator) -> None:
    simulator.config.faults.update({"submit_errors": [{"status": 402, "count": 1}]})
    with receiver_for(tmp_path, simulator, {}) as receiver:
        first = submit(receiver, "fox-4")
        assert first.status_code == 402, first.text
        error = first.json()["error"]
        assert "refused" in error["message"] and error["submission"]["state"] == "refused"
        assert error["submission"]["upstream_status"] == 402
        again = submit(receiver, "fox-4")
        assert (
            again.status_code == 402
            and again.json()["error"]["submission"]["id"] == error["submission"]["id"]
        )
        assert upstream(simulator) == (1, 0)


def test_a_request_the_catalog_rules_out_is_a_400_naming_field_value_and_allowed(tmp_path, simulator) -> None:
    with receiver_for(tmp_path, simulator, {}) as receiver:
        answer = submit(receiver, "fox-5", {**BODY, "duration": 5})
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["field"] == "duration" and error["allowed"] == [4, 6, 8]
        assert "5" in error["message"] and VEO in error["message"]
        assert receiver.get("/submissions/fox-5").status_code == 404  # nothing recorded, nothing paid
        for body, field in (
            ({**BODY, "resolution": "8K"}, "resolution"),
            ({**BODY, "model": "google/veo-9"}, "model"),
            ({**BODY, "frame_images": [{"image_url": {"url": "/etc/passwd"}, "frame_type": "first_frame"}]},
             "frame_images[0]"),
        ):  # fmt: skip
            refused = submit(receiver, "fox-6", body)
            assert refused.status_code == 400 and refused.json()["error"]["field"] == field, refused.text
        assert submit(receiver, "fox-7", {**BODY, "callback_url": "https://x.example"}).status_code == 400
        assert (
            httpx.post(f"{receiver.url}/jobs", json=BODY, headers=AUTH, timeout=10).status_code == 400
        )  # no key
        assert upstream(simulator) == (0, 0)


def test_sigkill_between_the_record_and_the_answer_never_pays_twice(tmp_path, simulator, store) -> None:
    """The receiver is killed while its submit is held upstream (recorded, sent, unanswered); after a
    restart, retries of the key send nothing, and the job's webhook ties the submission back."""
    settings = receiver_settings(str(tmp_path / "data"), simulator)
    port = free_port()
    env = {"RECEIVER_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    if "database_url" in store:
        env["RECEIVER_DATABASE_URL"] = store["database_url"]
    simulator.config.faults.submit_latency = 3.0
    simulator.config.webhook_attempts = 12  # the webhook keeps trying while the receiver restarts
    first = ReceiverProcess(settings, port=port, extra_env=env).start()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(submit, first, "fox-kill")
            wait_until(lambda: upstream(simulator)[0] == 1, timeout=20, what="the submit to reach upstream")
            first.kill()  # recorded and sent, not answered: the worst moment
            with pytest.raises(httpx.HTTPError):
                pending.result(timeout=10)
    finally:
        first.kill()
    simulator.config.faults.submit_latency = 0.0
    second = ReceiverProcess(settings, port=port, extra_env=env).start()
    try:
        shown = second_get(second, "/submissions/fox-kill")
        # SQLite (one process per data dir): known dead at start, so outcome_unknown at once. PostgreSQL
        # (replicas) cannot tell a dead submit from another replica's live one until it is stale; either
        # way the webhook below ties it to its job.
        assert shown["state"] in ("outcome_unknown", "submitting", "submitted")
        if "database_url" not in store:
            assert shown["state"] in ("outcome_unknown", "submitted")
        tied = wait_until(
            lambda: (lambda s: s if s["state"] == "submitted" else None)(
                second_get(second, "/submissions/fox-kill")
            ),
            timeout=30,
            what="the webhook to tie the submission to its job",
        )
        for _ in range(3):
            again = submit(second, "fox-kill")
            assert again.status_code == 200 and again.json()["job_id"] == tied["job_id"], again.text
        assert upstream(simulator) == (1, 1)
    finally:
        second.stop()


def second_get(receiver: ReceiverProcess, path: str) -> dict[str, Any]:
    answer = httpx.get(f"{receiver.url}{path}", headers=AUTH, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()
