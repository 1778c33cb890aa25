"""Waiting without polling (issue 15): `GET /jobs/{id}?wait=` and `GET /events`, over real HTTP.

A real receiver under uvicorn on loopback (each storage backend, tests/backends.py), the simulator's
webhooks, and signed webhooks sent by the test where it must decide when a job changes. How long
after a webhook a waiter wakes is a `make bench` figure (tests/bench/waiting.py), not asserted here:
these tests check what wakes, what does not, and that nothing is lost.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from receiver_support import (
    API_TOKEN,
    AUTH,
    ReceiverProcess,
    RunningReceiver,
    receiver_settings,
    running_receiver,
    signed_event,
    wait_until,
    wait_until_async,
)

from openrouter_video import AsyncReceiverClient, JobNotFinished, OpenRouterVideo, ReceiverClient
from openrouter_video.receiver.domain.model import ChangeToken
from openrouter_video.receiver.domain.waiting import MAX_WAIT, decode_cursor, encode_cursor, parse_wait
from openrouter_video.receiver.storage.postgres.feed import UNSEEN_FOR, advance

pytestmark = pytest.mark.timeout(180)

MODEL = "google/veo-3.1"


@pytest.fixture
def receiver(tmp_path, simulator, backend):
    with running_receiver(backend.settings(str(tmp_path / "data"), simulator)) as rx:
        yield rx


def send(rx: RunningReceiver | ReceiverProcess, secret: str | None, job_id: str, status: str) -> None:
    """A signed webhook moving `job_id` to `status` (no outputs: nothing to download)."""
    data: dict[str, Any] = {"id": job_id, "status": status}
    if status == "failed":
        data["error"] = "content policy"
    body, headers = signed_event(secret or "", data)
    answer = httpx.post(f"{rx.url}/webhooks/openrouter", content=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text


def open_waits(url: str) -> float:
    """Long-polls the receiver at `url` holds right now (its /metrics gauge)."""
    text = httpx.get(f"{url}/metrics", headers=AUTH, timeout=10).text
    return next(
        float(line.split()[1]) for line in text.splitlines() if line.startswith("receiver_waits_open ")
    )


class LongPoll:
    """One `GET /jobs/{id}?wait=` in a thread; `done` is set when it is answered."""

    def __init__(self, url: str, job_id: str, wait: float) -> None:
        self.done = threading.Event()
        self.response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, args=(url, job_id, wait), daemon=True)
        self._thread.start()

    def _run(self, url: str, job_id: str, wait: float) -> None:
        try:
            self.response = httpx.get(
                f"{url}/jobs/{job_id}", params={"wait": wait}, headers=AUTH, timeout=wait + 30
            )
        finally:
            self.done.set()

    def answer(self, timeout: float = 30.0) -> httpx.Response:
        assert self.done.wait(timeout), "the long-poll was not answered"
        assert self.response is not None
        return self.response


# -- the long-poll ---------------------------------------------------------------------------------


def test_a_long_poll_stays_open_while_the_job_is_unchanged_and_wakes_on_the_simulators_webhook(
    receiver, simulator
) -> None:
    with OpenRouterVideo(api_key=simulator.api_key, base_url=simulator.api_base) as api:
        job = api.submit(
            "[sim:in_progress=2] a slow fox", model=MODEL, duration=4, callback_url=receiver.webhook_url
        )
    assert receiver.post("/jobs", json={"id": job.id}).status_code == 201  # tracked, pending
    poll = LongPoll(receiver.url, job.id, wait=50)
    wait_until(lambda: open_waits(receiver.url) >= 1, what="the long-poll to be waiting")

    # Until the job changes, the long-poll must still be open: `answered` is read before the record,
    # so a long-poll answered while the record still read pending would be one answered too early.
    def job_changed() -> bool:
        answered = poll.done.is_set()
        if receiver.job(job.id)["status"] != "pending":
            return True
        assert not answered, "the long-poll was answered while the job had not changed"
        return False

    wait_until(job_changed, 30, what="the simulator's webhook")

    response = poll.answer()
    assert response.status_code == 200, response.text
    assert response.headers["wait-result"] == "changed"
    assert response.json()["status"] == "completed"

    # The client's wait() long-polls on until the video is stored.
    with ReceiverClient(receiver.url, API_TOKEN) as rx:
        record = rx.wait(job.id, timeout=30)
    assert record["status"] == "completed"
    assert [o["state"] for o in record["outputs"]] == ["done"]


def test_a_long_poll_answers_the_record_at_its_timeout_and_refuses_bad_waits(receiver, simulator) -> None:
    send(receiver, simulator.secret, "jobWaitIdle", "in_progress")
    answer = receiver.get("/jobs/jobWaitIdle", params={"wait": 0.3})
    assert answer.status_code == 200
    assert (answer.headers["wait-result"], answer.json()["status"]) == ("timeout", "in_progress")

    for bad in ("0", "-1", "nan", "inf", "61", "soon", ""):
        refused = receiver.get("/jobs/jobWaitIdle", params={"wait": bad})
        assert refused.status_code == 400, bad
        assert "wait must be a number of seconds greater than 0 and at most 60" in refused.text
    assert receiver.get("/jobs/jobNobodyKnows", params={"wait": 30}).status_code == 404  # at once

    send(receiver, simulator.secret, "jobWaitIdle", "failed")  # terminal, nothing to download
    settled = receiver.get("/jobs/jobWaitIdle", params={"wait": 30})  # at once: it can change no more
    assert (settled.headers["wait-result"], settled.json()["status"]) == ("settled", "failed")


def test_200_concurrent_long_polls_on_different_jobs_all_wake(receiver, simulator) -> None:
    ids = [f"jobMany{i:03d}" for i in range(200)]
    for job_id in ids:
        send(receiver, simulator.secret, job_id, "in_progress")

    async def scenario() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=260, max_keepalive_connections=260)
        async with httpx.AsyncClient(headers=AUTH, timeout=60, limits=limits) as http:
            polls = [
                asyncio.create_task(http.get(f"{receiver.url}/jobs/{job_id}", params={"wait": 45}))
                for job_id in ids
            ]

            async def all_waiting() -> bool:
                assert not any(p.done() for p in polls), "a long-poll was answered before its job changed"
                return "receiver_waits_open 200.0" in (await http.get(f"{receiver.url}/metrics")).text

            await wait_until_async(all_waiting, 30, what="the 200 long-polls to be all waiting")
            async with httpx.AsyncClient(timeout=30) as hooks:
                for job_id in ids:
                    body, headers = signed_event(
                        simulator.secret, {"id": job_id, "status": "failed", "error": "x"}
                    )
                    assert (
                        await hooks.post(receiver.webhook_url, content=body, headers=headers)
                    ).status_code == 200
            return await asyncio.wait_for(asyncio.gather(*polls), timeout=60)

    answers = asyncio.run(scenario())
    assert [(a.status_code, a.headers["wait-result"], a.json()["status"]) for a in answers] == [
        (200, "changed", "failed")
    ] * 200
    assert [a.json()["id"] for a in answers] == ids


def test_the_async_client_waits_for_a_finished_job_and_gives_up_at_its_deadline(receiver, simulator) -> None:
    send(receiver, simulator.secret, "jobAsyncWait", "in_progress")

    async def scenario() -> tuple[dict[str, Any], JobNotFinished]:
        async with AsyncReceiverClient(receiver.url, API_TOKEN) as rx:
            with pytest.raises(JobNotFinished) as late:
                await rx.wait("jobAsyncWait", timeout=0.3)
            waiting = asyncio.create_task(rx.wait("jobAsyncWait", timeout=30))
            await asyncio.to_thread(wait_until, lambda: open_waits(receiver.url) >= 1)
            await asyncio.to_thread(send, receiver, simulator.secret, "jobAsyncWait", "cancelled")
            return await waiting, late.value

    record, late = asyncio.run(scenario())
    assert record["status"] == "cancelled"  # returned, not raised: the record says what happened
    assert (late.job_id, late.status) == ("jobAsyncWait", "in_progress")


def test_a_client_that_hangs_up_leaves_no_waiter_or_stream_behind(receiver, simulator) -> None:
    send(receiver, simulator.secret, "jobHangUp", "in_progress")
    with pytest.raises(httpx.ReadTimeout):  # the client gives up long before the 50 s it asked for
        httpx.get(f"{receiver.url}/jobs/jobHangUp", params={"wait": 50}, headers=AUTH, timeout=1.0)
    wait_until(lambda: open_waits(receiver.url) == 0, what="the hung-up long-poll's waiter to go")

    def open_streams() -> float:
        text = receiver.get("/metrics").text
        return next(
            float(ln.split()[1]) for ln in text.splitlines() if ln.startswith("receiver_event_streams_open ")
        )

    stream = events(receiver.url)
    assert next(stream)["event"] == "ready"
    assert open_streams() == 1
    stream.close()
    wait_until(lambda: open_streams() == 0, what="the closed stream to go")


# -- the event stream ------------------------------------------------------------------------------


def events(url: str, headers: dict[str, str] | None = None, **params: str) -> Iterator[dict[str, str]]:
    """The parsed events of `GET /events` (comments and the retry line skipped), as they come."""
    with httpx.stream(
        "GET", f"{url}/events", headers={**AUTH, **(headers or {})}, params=params, timeout=30
    ) as stream:
        assert stream.status_code == 200, stream.read()
        assert stream.headers["content-type"].startswith("text/event-stream")
        event: dict[str, str] = {}
        for line in stream.iter_lines():
            if not line:
                if "event" in event:
                    yield event
                event = {}
            elif not line.startswith(":") and ":" in line:
                name, _, value = line.partition(":")
                event[name] = value.removeprefix(" ")


def test_the_event_stream_sends_each_change_and_resumes_with_last_event_id(receiver, simulator) -> None:
    stream = events(receiver.url)
    ready = next(stream)
    assert ready["event"] == "ready" and ready["id"]
    send(receiver, simulator.secret, "jobEvA", "in_progress")
    first = next(stream)
    assert first["event"] == "job"
    change = json.loads(first["data"])
    assert (change["id"], change["status"], change["outputs"]) == ("jobEvA", "in_progress", [])
    cursor = first["id"]
    stream.close()  # the client goes away

    # Changes while nobody listens: all of them come when it reconnects from where it was.
    send(receiver, simulator.secret, "jobEvB", "in_progress")
    send(receiver, simulator.secret, "jobEvC", "failed")
    send(receiver, simulator.secret, "jobEvA", "cancelled")
    for resumed in (events(receiver.url, {"Last-Event-ID": cursor}), events(receiver.url, since=cursor)):
        seen: dict[str, str] = {}
        last_id = None
        while len(seen) < 3:
            event = next(resumed)
            assert event["event"] == "job", event
            change = json.loads(event["data"])
            seen[change["id"]] = change["status"]
            last_id = event.get("id", last_id)
        resumed.close()
        assert seen == {"jobEvB": "in_progress", "jobEvC": "failed", "jobEvA": "cancelled"}
        assert last_id is not None  # the batch's last event carries the cursor to resume from

    refused = httpx.get(f"{receiver.url}/events", headers={**AUTH, "Last-Event-ID": "not-a-cursor"})
    assert refused.status_code == 400 and "not one GET /events sent" in refused.text
    ahead = events(receiver.url, since=encode_cursor(ChangeToken(10**12, 10**12), time.time()))
    reset = next(ahead)
    assert reset["event"] == "reset" and "ahead" in json.loads(reset["data"])["reason"]
    assert reset["id"]  # where to go on from
    ahead.close()


# -- replicas, shutdown ----------------------------------------------------------------------------


def test_waits_and_streams_on_one_replica_wake_on_a_webhook_to_another(tmp_path, simulator, pg_url) -> None:
    def replica(name: str):
        return running_receiver(receiver_settings(str(tmp_path / name), simulator, database_url=pg_url))

    with replica("a") as a, replica("b") as b:
        send(b, simulator.secret, "jobTwoReplicas", "in_progress")
        poll = LongPoll(a.url, "jobTwoReplicas", wait=50)
        stream = events(a.url)
        assert next(stream)["event"] == "ready"
        wait_until(lambda: open_waits(a.url) >= 1, what="the long-poll on replica A")
        send(b, simulator.secret, "jobTwoReplicas", "failed")  # to replica B
        response = poll.answer()
        assert (response.headers["wait-result"], response.json()["status"]) == ("changed", "failed")
        change = next(stream)
        assert (change["event"], json.loads(change["data"])["status"]) == ("job", "failed")
        stream.close()


def test_stopping_the_receiver_answers_its_open_long_polls_at_once(tmp_path, simulator) -> None:
    process = ReceiverProcess(receiver_settings(str(tmp_path / "data"), simulator)).start()
    try:
        send(process, simulator.secret, "jobShutdown", "in_progress")
        poll = LongPoll(process.url, "jobShutdown", wait=55)
        wait_until(lambda: open_waits(process.url) >= 1, what="the long-poll to be waiting")
        stopping = time.monotonic()
        process.stop()  # SIGTERM: the server's shutdown wakes every waiter
        response = poll.answer(timeout=15)
        assert time.monotonic() - stopping < 15  # not the 55 s it asked for
        assert (response.status_code, response.headers["wait-result"]) == (200, "closing")
        assert response.json()["status"] == "in_progress"
    finally:
        process.kill()


# -- the pure rules --------------------------------------------------------------------------------


def test_wait_seconds_and_event_cursors_are_checked() -> None:
    assert parse_wait("0.5") == 0.5 and parse_wait(str(MAX_WAIT)) == MAX_WAIT
    for bad in ("0", "-2", "1e400", "nan", "x", "60.01"):
        with pytest.raises(ValueError, match="wait must be"):
            parse_wait(bad)
    token = ChangeToken(41, 7, ((39, 1000.5),), ())
    assert decode_cursor(encode_cursor(token, 1234.5)) == (token, 1234.5)
    for bad in ("", "x", "WyJjMSJd", encode_cursor(token, 1.0)[:-3], "W1tbW1tbW1tbW1td" * 3):
        with pytest.raises(ValueError, match="not one GET /events sent"):
            decode_cursor(bad)


def test_an_event_missed_long_ago_is_still_reported_when_it_shows() -> None:
    """PostgreSQL commits ids out of order: id 5 was missing at a look long ago (a stream resumed now
    from that look's cursor); it is there now, so it is new, however long ago it was missed."""
    now = 10_000.0
    top, missing, new = advance(6, ((5, now - UNSEEN_FOR * 10),), [5, 6, 7], now)
    assert (top, missing, new) == (7, (), {5, 7})
    # Still missing after UNSEEN_FOR: taken for a rollback and no longer looked for.
    assert advance(6, ((5, now - UNSEEN_FOR * 10),), [6, 7], now)[1] == ()
