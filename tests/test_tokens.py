"""Named API tokens over real HTTP against the simulator, on SQLite and on PostgreSQL + S3: each app
sees only its own jobs (everywhere a job shows), roles limit what a token may do, a revoked token
stops working, a token's own spending cap holds it alone, and nothing stores or logs a token."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
from backends import Backend
from receiver_support import (
    API_TOKEN,
    ReceiverProcess,
    public_receiver,
    receiver_settings,
    signed_event,
    wait_until,
)
from token_support import (
    BODY,
    create_token,
    event_jobs_until,
    events_cursor,
    get,
    listed,
    submit,
    tokens_cli,
)

# $0.20/s without audio at 720p: $0.80, kept running by the simulator (pending for 10 minutes).
RUNNING = {**BODY, "prompt": "a heron at dusk [sim:pending=600]", "generate_audio": False}


@contextlib.contextmanager
def receiver_on(backend: Backend, tmp_path: Any, simulator: Any, **overrides: Any) -> Iterator[Any]:
    settings = backend.settings(str(tmp_path / "data"), simulator, **overrides)
    with public_receiver(settings) as receiver:
        yield receiver


def upstream_submits(simulator: Any) -> int:
    return httpx.get(f"{simulator.admin_url}/stats", timeout=10).json()["requests"].get("submits", 0)


def test_each_app_sees_only_its_own_jobs_and_admin_sees_all(backend, tmp_path, simulator) -> None:
    with receiver_on(backend, tmp_path, simulator) as rx:
        data_dir, url = rx.settings.data_dir, rx.url
        a = create_token(backend, data_dir, "app-a", "submit")
        b = create_token(backend, data_dir, "app-b", "submit")
        ops = create_token(backend, data_dir, "ops", "admin")
        start = events_cursor(url, API_TOKEN)

        # The same Idempotency-Key from two apps: two submissions, two paid jobs.
        first, second = submit(url, a, "same-key"), submit(url, b, "same-key")
        assert first.status_code == 201 and second.status_code == 201, (first.text, second.text)
        assert first.json()["id"] != second.json()["id"] and upstream_submits(simulator) == 2
        job_a, job_b = first.json()["job_id"], second.json()["job_id"]
        assert job_a != job_b and first.json()["owner"] == "app-a"
        assert submit(url, a, "same-key").json()["job_id"] == job_a  # a retry: A's own, nothing sent
        assert upstream_submits(simulator) == 2
        rx.wait_downloaded(job_a, timeout=30)
        rx.wait_downloaded(job_b, timeout=30)
        # A job known by webhook only: nobody's.
        body, headers = signed_event(simulator.secret, {"id": "jobWebhookOnly1", "status": "in_progress"})
        assert httpx.post(rx.webhook_url, content=body, headers=headers, timeout=10).status_code == 200
        rx.applied()

        assert listed(url, a) == {job_a} and listed(url, b) == {job_b}
        assert {job_a, job_b, "jobWebhookOnly1"} <= listed(url, API_TOKEN) == listed(url, ops)
        assert get(url, a, f"/jobs/{job_a}").json()["owner"] == "app-a"
        assert get(url, API_TOKEN, "/jobs/jobWebhookOnly1").json()["owner"] is None
        for path in (
            f"/jobs/{job_b}",
            f"/jobs/{job_b}?wait=1",
            f"/jobs/{job_b}/content",
            f"/submissions/{second.json()['id']}",
            "/jobs/jobWebhookOnly1",
        ):
            answer = get(url, a, path)
            assert answer.status_code == 404, (path, answer.text)
        assert get(url, a, f"/jobs/{job_a}/content").status_code == 200
        assert get(url, ops, f"/jobs/{job_b}/content").status_code == 200
        assert get(url, a, "/submissions/same-key").json()["id"] == first.json()["id"]
        assert get(url, b, "/submissions/same-key").json()["id"] == second.json()["id"]

        # Registering by id: A takes a job nobody owns; then B cannot take it (as if it did not exist).
        headers = {"Authorization": f"Bearer {a}"}
        taken = httpx.post(f"{url}/jobs", json={"id": "jobWebhookOnly1"}, headers=headers, timeout=10)
        assert taken.status_code == 200 and taken.json()["owner"] == "app-a", taken.text
        refused = httpx.post(
            f"{url}/jobs",
            json={"id": "jobWebhookOnly1"},
            headers={"Authorization": f"Bearer {b}"},
            timeout=10,
        )
        assert refused.status_code == 404

        # Events: each app's stream carries its own jobs only (up to a marker made after all the rest).
        marker = httpx.post(f"{url}/jobs", json={"id": "jobMarkerA1"}, headers=headers, timeout=10)
        assert marker.status_code == 201
        seen_by_a = event_jobs_until(url, a, start, "jobMarkerA1")
        assert set(seen_by_a) == {job_a, "jobWebhookOnly1", "jobMarkerA1"}, seen_by_a
        assert {job_a, job_b, "jobWebhookOnly1"} <= set(
            event_jobs_until(url, API_TOKEN, start, "jobMarkerA1")
        )

        # Usage: each app its own rows; the admin everyone's.
        assert {r["token"] for r in get(url, a, "/usage").json()["rows"]} == {"app-a"}
        assert {"app-a", "app-b"} <= {r["token"] for r in get(url, ops, "/usage").json()["rows"]}

        _assert_no_token_stored(backend, rx.settings, [a, b, ops])


def _assert_no_token_stored(backend: Backend, settings: Any, tokens: list[str]) -> None:
    if backend.database_url is None:
        stored = b"".join(
            open(path, "rb").read()  # noqa: SIM115
            for path in (settings.db_path, f"{settings.db_path}-wal")
            if os.path.exists(path)
        )
    else:
        with psycopg.connect(backend.database_url) as conn:
            rows = conn.execute(
                "SELECT row_to_json(t)::text FROM tokens t UNION ALL SELECT row_to_json(j)::text FROM jobs j "
                "UNION ALL SELECT row_to_json(s)::text FROM submissions s"
            ).fetchall()
        stored = "\n".join(r[0] for r in rows).encode()
    assert b"app-a" in stored  # the rows are there, read whole
    for token in tokens:
        assert token.encode() not in stored


def test_roles_limit_what_a_token_may_do_and_revoking_ends_it(backend, tmp_path, simulator) -> None:
    with receiver_on(backend, tmp_path, simulator) as rx:
        data_dir, url = rx.settings.data_dir, rx.url
        reader = create_token(backend, data_dir, "dash-reader", "read")
        app = create_token(backend, data_dir, "app", "submit")
        refused = submit(url, reader, "read-1")
        assert refused.status_code == 403, refused.text
        message = refused.json()["error"]["message"]
        assert "dash-reader" in message and "role read" in message and "\n" not in message
        assert get(url, reader, "/jobs").status_code == 200 and get(url, reader, "/usage").status_code == 200
        for token in (reader, app):
            assert get(url, token, "/deliveries").status_code == 403
            assert get(url, token, "/metrics").status_code == 403
            gone = httpx.delete(f"{url}/jobs/jobX1", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert gone.status_code == 403
        assert get(url, "orv_" + "x" * 43, "/jobs").status_code == 401  # well-formed, unknown

        assert get(url, app, "/jobs").status_code == 200
        revoked = tokens_cli(backend, data_dir, "revoke", "app")
        assert revoked.exit_code == 0 and "revoked" in revoked.output
        # The receiver's cache may accept it for a few seconds more (auth.REVOCATION_DELAY).
        wait_until(lambda: get(url, app, "/jobs").status_code == 401, timeout=15, what="the revocation")
        assert "unknown or revoked" in get(url, app, "/jobs").json()["error"]["message"]
        assert submit(url, app, "after-revoke").status_code == 401


def test_a_tokens_own_cap_refuses_it_while_another_still_submits(backend, tmp_path, simulator) -> None:
    with receiver_on(backend, tmp_path, simulator) as rx:
        data_dir, url = rx.settings.data_dir, rx.url
        small = create_token(backend, data_dir, "small", "submit", "--budget-day", "1")
        big = create_token(backend, data_dir, "big", "submit")
        assert submit(url, small, "s-1", RUNNING).status_code == 201
        over = submit(url, small, "s-2", RUNNING)
        assert over.status_code == 402, over.text
        message = over.json()["error"]["message"]
        assert "daily cap for token 'small' is $1.00" in message and "$0.80 is spent" in message
        assert submit(url, big, "b-1", RUNNING).status_code == 201  # no cap of its own, none receiver-wide
        assert submit(url, big, "b-2", RUNNING).status_code == 201
        assert upstream_submits(simulator) == 3

        shown = get(url, small, "/usage").json()
        [cap] = shown["caps"]
        assert (cap["token"], cap["cap_usd"], cap["spent_usd"]) == ("small", 1.0, 0.8)
        assert [r["token"] for r in shown["rows"]] == ["small"]
        assert get(url, big, "/usage").json()["caps"] == []

        # `tokens list` says when each was last used; one never presented says "-".
        create_token(backend, data_dir, "idle", "read")
        listed = {
            line.split()[0]: line.split()
            for line in tokens_cli(backend, data_dir, "list").output.splitlines()
        }
        assert listed["small"][-2].endswith("Z") and listed["big"][-2].endswith("Z")  # LAST USED (date time)
        assert listed["idle"][-2:] == ["-", "-"]  # never used, not revoked


def test_each_request_log_line_names_the_token_never_the_token_itself(tmp_path, simulator) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator)
    receiver = ReceiverProcess(settings).start()
    try:
        token = create_token(Backend("sqlite"), settings.data_dir, "logged-app", "read")
        assert get(receiver.url, token, "/jobs").status_code == 200
        assert get(receiver.url, API_TOKEN, "/jobs?limit=1").status_code == 200

        def request_lines() -> list[dict[str, Any]]:
            with open(receiver.log_path) as fh:
                lines = [json.loads(line) for line in fh if line.startswith("{")]
            return [line for line in lines if line.get("event") == "request"]

        lines = wait_until(lambda: len(request_lines()) >= 2 and request_lines(), what="the request lines")
        assert [(line["token"], line["path"], line["status"]) for line in lines[:2]] == [
            ("logged-app", "/jobs", 200),
            ("admin", "/jobs", 200),
        ]
        with open(receiver.log_path) as fh:
            text = fh.read()
        assert token not in text and API_TOKEN not in text
    finally:
        receiver.stop()
