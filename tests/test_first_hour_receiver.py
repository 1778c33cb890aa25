"""Issue 12, the receiver's first hour: start-up failures in one line, `webhook test` leaving no job,
registration checked upstream, job deletion, content 404s that say why, --no-auth made explicit,
retention (`prune` and the sweep) and the metrics people look for. All over real HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest
from click.testing import CliRunner
from receiver_support import (
    API_TOKEN,
    ReceiverProcess,
    free_port,
    receiver_settings,
    running_receiver,
    signed_event,
    wait_until,
)

from openrouter_video import OpenRouterVideo
from openrouter_video.receiver.cli import prune, webhook


@pytest.fixture
def api(simulator):
    with OpenRouterVideo(api_key=simulator.api_key, base_url=simulator.api_base) as client:
        yield client


def _serve(args: list[str], env_extra: dict[str, str] | None = None, timeout: float = 20) -> tuple[int, str]:
    """`openrouter-video serve ARGS` expected to fail at start-up: its exit status and all it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROUTER_", "RECEIVER_"))}
    env.update({"OPENROUTER_API_KEY": "sk-or-x", "OPENROUTER_WEBHOOK_SECRET": "whsec-x"})
    env.update(env_extra or {})
    done = subprocess.run(
        [sys.executable, "-m", "openrouter_video._cli", "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stdout + done.stderr


def _one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


# -- 3. start-up failures are one line; the address is logged -------------------------------------------


def test_startup_failures_are_one_line_naming_the_cause(tmp_path) -> None:
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "videos").write_text("a file where the videos folder goes")
    code, out = _serve(["--no-auth", "--port", "0", "--data-dir", str(blocked)])
    assert code != 0 and "videos" in _one_line(out), out

    code, out = _serve(["--no-auth", "--port", "0", "--data-dir", "/proc/nope"])
    assert code != 0 and "/proc/nope" in _one_line(out), out

    code, out = _serve(["--no-auth", "--port", "0"], {"RECEIVER_MAX_HEADERS": "many"})
    assert code != 0 and "RECEIVER_MAX_HEADERS" in _one_line(out), out


def test_port_in_use_is_one_line_and_nothing_is_started_first(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out = _serve(["--no-auth", "--port", str(port), "--data-dir", str(tmp_path / "d")])
    line = _one_line(out)
    assert code != 0 and str(port) in line and "in use" in line, out
    assert "receiver.started" not in out
    assert not (tmp_path / "d" / "receiver.db").exists()  # nothing prepared before the bind


def test_serve_logs_the_address_it_listens_on(tmp_path, simulator) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator, api_token=None)
    process = ReceiverProcess(settings, extra_args=["--no-auth"])
    env = process.env()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "openrouter_video._cli", "serve", "--port", "0", "--no-auth"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def started() -> dict | None:
            assert child.poll() is None, log_path.read_text()
            for line in log_path.read_text().splitlines():
                if '"receiver.started"' in line:
                    return json.loads(line)
            return None

        address = wait_until(started, timeout=20, what="receiver.started")["address"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", address) and not address.endswith(":0")
        assert httpx.get(f"{address}/healthz", timeout=5).status_code == 200
    finally:
        child.terminate()
        child.wait(15)


# -- 11. --no-auth is explicit ------------------------------------------------------------------------


def test_no_auth_with_a_token_set_is_a_usage_error(tmp_path) -> None:
    code, out = _serve(
        ["--no-auth", "--port", "0", "--data-dir", str(tmp_path / "d")], {"RECEIVER_API_TOKEN": API_TOKEN}
    )
    line = _one_line(out)
    assert code == 2 and "--no-auth" in line and "RECEIVER_API_TOKEN" in line, out
    code, out = _serve(["--no-auth", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path / "d")])
    assert code == 2 and "loopback" in _one_line(out), out
    assert not (tmp_path / "d").exists()


# -- 4 and 9. `webhook test` makes no job; a wrong URL is said so -------------------------------------


def _webhook_test(url: str, secret: str):
    return CliRunner().invoke(webhook, ["test", url, "--secret", secret])


def test_webhook_test_leaves_no_job_and_is_counted_as_a_test(tmp_path, simulator) -> None:
    with running_receiver(receiver_settings(str(tmp_path / "data"), simulator)) as rx:
        result = _webhook_test(rx.webhook_url, simulator.secret)
        assert result.exit_code == 0, result.output
        job_id = re.search(r"selftest-[0-9a-f-]+", result.output).group(0)
        assert '"outcome":"test"' in result.output
        rx.applied()
        assert rx.get("/jobs").json()["jobs"] == []
        assert rx.get(f"/jobs/{job_id}").status_code == 404
        stored = [d for d in rx.deliveries() if d["job_id"] == job_id]
        assert [d["state"] for d in stored] == ["test"]
        assert 'receiver_deliveries_total{outcome="test"} 1.0' in rx.get("/metrics").text

        # A test delivery is verified like any other: with the header and a wrong secret, refused.
        body, headers = signed_event("not-the-secret", {"id": "selftest-1-ab", "status": "failed"})
        forged = httpx.post(rx.webhook_url, content=body, headers={**headers, "X-Receiver-Selftest": "1"})
        assert forged.status_code == 401
        # The header never drops a real event: a real job id with it is applied as usual.
        body, headers = signed_event(simulator.secret, {"id": "jobReal1", "status": "failed", "error": "x"})
        real = httpx.post(rx.webhook_url, content=body, headers={**headers, "X-Receiver-Selftest": "1"})
        assert real.json()["outcome"] == "accepted"
        rx.wait_job("jobReal1", lambda j: j["status"] == "failed")


def test_webhook_test_to_a_wrong_url_says_so_and_fails(tmp_path, simulator) -> None:
    with running_receiver(receiver_settings(str(tmp_path / "data"), simulator)) as rx:
        for url in (f"{rx.url}/webhooks/wrong", f"{rx.url}/healthz"):
            result = _webhook_test(url, simulator.secret)
            assert result.exit_code == 3, result.output
            assert "wrong URL" in result.output and "/webhooks/openrouter" in result.output
            assert "ok" not in result.output.split()
        assert rx.delivery_count() == 0


# -- 5. registration is checked upstream; the fallback ends a job it cannot find; DELETE --------------


def test_registering_an_id_upstream_does_not_know_is_refused(tmp_path, simulator, api) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator, verify_registrations=True)
    with running_receiver(settings) as rx:
        refused = rx.post("/jobs", json={"id": "jobNoSuchThing1"})
        assert refused.status_code == 400
        assert "jobNoSuchThing1" in refused.json()["error"]["message"]
        assert "404" in refused.json()["error"]["message"]
        assert rx.get("/jobs/jobNoSuchThing1").status_code == 404
        job = api.submit("real", model="google/veo-3.1", duration=4)
        assert rx.post("/jobs", json={"id": job.id}).status_code == 201


def test_registering_while_upstream_is_unreachable_still_tracks_the_job(tmp_path, simulator) -> None:
    settings = receiver_settings(
        str(tmp_path / "data"),
        simulator,
        verify_registrations=True,
        base_url=f"http://127.0.0.1:{free_port()}/api/v1",
    )
    with running_receiver(settings) as rx:
        response = rx.post("/jobs", json={"id": "jobOffline1"})
        assert response.status_code == 201, response.text
        assert [e["kind"] for e in response.json()["events"]][-1] == "upstream_unchecked"


def test_the_fallback_ends_a_job_upstream_does_not_know_with_an_event(tmp_path, simulator) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator, fallback_after=0.1)
    with running_receiver(settings) as rx:
        assert rx.post("/jobs", json={"id": "jobGhost1"}).status_code == 201
        record = rx.wait_job(
            "jobGhost1", lambda j: any(e["kind"] == "not_found_upstream" for e in j["events"])
        )
        assert record["status"] == "pending" and "not found upstream" in record["error"]
        with contextlib.closing(rx.db()) as conn:
            row = conn.execute("SELECT next_poll_at FROM jobs WHERE id = 'jobGhost1'").fetchone()
        assert row["next_poll_at"] is None


def test_an_admin_deletes_a_job_with_its_files(tmp_path, simulator, api) -> None:
    with running_receiver(receiver_settings(str(tmp_path / "data"), simulator)) as rx:
        job = api.submit("to delete", model="google/veo-3.1", duration=4, callback_url=rx.webhook_url)
        rx.wait_downloaded(job.id)
        folder = os.path.join(rx.settings.videos_dir, job.id)
        assert os.listdir(folder) == ["0.mp4"]
        assert httpx.delete(f"{rx.url}/jobs/{job.id}").status_code == 401
        deleted = httpx.delete(f"{rx.url}/jobs/{job.id}", headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["files"] == 1 and deleted.json()["freed_bytes"] > 0
        assert not os.path.exists(folder)
        assert rx.get(f"/jobs/{job.id}").status_code == 404
        with contextlib.closing(rx.db()) as conn:
            for table, column in (("jobs", "id"), ("job_events", "job_id"), ("outputs", "job_id")):
                sql = f"SELECT count(*) FROM {table} WHERE {column} = ?"
                assert conn.execute(sql, (job.id,)).fetchone()[0] == 0
        again = httpx.delete(f"{rx.url}/jobs/{job.id}", headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert again.status_code == 404
        paths = rx.get("/openapi.json").json()["paths"]
        assert "delete" in paths["/jobs/{job_id}"]


# -- 6. content 404s say which case it is -------------------------------------------------------------


def test_content_404s_say_why(tmp_path, simulator, api) -> None:
    with running_receiver(receiver_settings(str(tmp_path / "data"), simulator)) as rx:

        def message(job_id: str, index: int = 0) -> str:
            response = rx.get(f"/jobs/{job_id}/content", params={"index": index})
            assert response.status_code == 404, response.text
            return response.json()["error"]["message"]

        assert message("nope") == "no job 'nope'"
        body, headers = signed_event(
            simulator.secret, {"id": "jobBroke1", "status": "failed", "error": "boom"}
        )
        assert httpx.post(rx.webhook_url, content=body, headers=headers).status_code == 200
        rx.wait_job("jobBroke1", lambda j: j["status"] == "failed")
        assert message("jobBroke1") == "job jobBroke1 failed: boom"
        assert rx.post("/jobs", json={"id": "jobWaiting1"}).status_code == 201
        assert "not downloaded yet" in message("jobWaiting1") and "pending" in message("jobWaiting1")
        job = api.submit("done", model="google/veo-3.1", duration=4, callback_url=rx.webhook_url)
        rx.wait_downloaded(job.id)
        assert message(job.id, 3) == f"job {job.id} has no output 3 (it has 1 output)"
        with contextlib.closing(rx.db()) as conn:  # an output still queued
            conn.execute("UPDATE outputs SET state = 'pending' WHERE job_id = ?", (job.id,))
        assert "is not downloaded yet (state pending)" in message(job.id)


# -- housekeeping: retention by `prune` and by the app's sweep --------------------------------------

DAY = 86400.0


def _age(rx, job_id: str, days: float) -> None:
    """Make a job, its outputs, events and deliveries `days` old, in the SQLite file directly."""
    with contextlib.closing(rx.db()) as conn:
        then = time.time() - days * DAY
        conn.execute("UPDATE jobs SET created_at = ?, updated_at = ? WHERE id = ?", (then, then, job_id))
        conn.execute("UPDATE outputs SET updated_at = ? WHERE job_id = ?", (then, job_id))
        conn.execute("UPDATE deliveries SET received_at = ? WHERE job_id = ?", (then, job_id))


def _prune(*args: str, env: dict[str, str] | None = None):
    return CliRunner(env=env).invoke(prune, list(args))


def test_prune_deletes_old_videos_records_and_deliveries_and_says_what(tmp_path, simulator, api) -> None:
    with running_receiver(receiver_settings(str(tmp_path / "data"), simulator)) as rx:
        old = api.submit("old", model="google/veo-3.1", duration=4, callback_url=rx.webhook_url)
        new = api.submit("new", model="google/veo-3.1", duration=4, callback_url=rx.webhook_url)
        ancient = api.submit("ancient", model="google/veo-3.1", duration=4, callback_url=rx.webhook_url)
        for job in (old, new, ancient):
            rx.wait_downloaded(job.id)
        rx.applied()
        _age(rx, old.id, 40)
        _age(rx, ancient.id, 400)
        # A pending delivery (acknowledged, not applied) is never pruned, however old.
        with contextlib.closing(rx.db()) as conn:
            conn.execute(
                "INSERT INTO deliveries (idempotency_key, received_at, headers, body) "
                "VALUES ('k-pending', ?, '{}', x'')",
                (time.time() - 400 * DAY,),
            )
        data = rx.settings.data_dir
        old_file = os.path.join(rx.settings.videos_dir, old.id, "0.mp4")
        size = os.path.getsize(old_file)

        dry = _prune("--data-dir", data, "--videos-days", "30", "--records-days", "365", "--dry-run")
        assert dry.exit_code == 0 and "dry run" in dry.output, dry.output
        assert os.path.exists(old_file) and rx.job(ancient.id) is not None

        env = {
            "RECEIVER_RETENTION_DAYS": "30",
            "RECEIVER_RECORD_RETENTION_DAYS": "365",
            "RECEIVER_DELIVERY_RETENTION_DAYS": "30",
        }
        done = _prune("--data-dir", data, env=env)
        assert done.exit_code == 0, done.output
        assert "1 job record" in done.output and f"{2 * size} bytes of video freed" in done.output, (
            done.output
        )
        assert not os.path.exists(old_file) and os.path.exists(os.path.join(rx.settings.videos_dir, new.id))
        record = rx.job(old.id)
        output = record["outputs"][0]
        assert output["state"] == "deleted" and "RECEIVER_RETENTION_DAYS" in output["error"]
        assert record["events"][-1]["kind"] == "video_deleted"
        assert rx.job(ancient.id) is None and not os.path.exists(
            os.path.join(rx.settings.videos_dir, ancient.id)
        )
        assert rx.get(f"/jobs/{new.id}/content").status_code == 200
        message = rx.get(f"/jobs/{old.id}/content").json()["error"]["message"]
        assert "was deleted" in message
        keys = {d["idempotency_key"] for d in rx.deliveries()}
        assert "k-pending" in keys and f"{old.id}-completed" not in keys and f"{new.id}-completed" in keys
        assert _prune("--data-dir", data).exit_code == 2  # no policy given: a usage error


def test_the_app_sweeps_by_itself(tmp_path, simulator, api) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator, sweep_interval=0.1)
    with running_receiver(settings) as rx:
        job = api.submit("old", model="google/veo-3.1", duration=4, callback_url=rx.webhook_url)
        rx.wait_downloaded(job.id)
        _age(rx, job.id, 10)
    with running_receiver(
        receiver_settings(settings.data_dir, simulator, retention_days=7.0, sweep_interval=0.1)
    ) as rx:
        rx.wait_job(job.id, lambda j: j["outputs"][0]["state"] == "deleted")
        assert not os.path.exists(os.path.join(rx.settings.videos_dir, job.id, "0.mp4"))


# -- metrics people look for -----------------------------------------------------------------------


def test_metrics_people_look_for(tmp_path, simulator, api) -> None:
    with running_receiver(receiver_settings(str(tmp_path / "data"), simulator)) as rx:
        job = api.submit("m", model="google/veo-3.1", duration=4, callback_url=rx.webhook_url)
        rx.wait_downloaded(job.id)
        body, headers = signed_event(simulator.secret, {"id": "jobMetric1", "status": "failed", "error": "x"})
        assert httpx.post(rx.webhook_url, content=body, headers=headers).status_code == 200
        rx.wait_job("jobMetric1", lambda j: j["status"] == "failed")
        assert rx.get("/jobs/no-such-job-1").status_code == 404
        text = rx.get("/metrics").text
        assert 'receiver_jobs{status="completed"} 1.0' in text
        assert 'receiver_jobs{status="failed"} 1.0' in text
        assert 'receiver_jobs{status="pending"} 0.0' in text
        assert re.search(r"^receiver_webhook_stored_seconds_count [1-9]", text, re.M)
        assert re.search(r'^receiver_request_seconds_count\{route="/jobs/\{job_id\}"\} [1-9]', text, re.M)
        assert re.search(r'^receiver_request_seconds_count\{route="/webhooks/openrouter"\} [1-9]', text, re.M)
        assert "no-such-job-1" not in text  # route templates, never raw paths
        assert re.search(r"^receiver_disk_free_bytes [1-9]", text, re.M)
        assert re.search(r"^receiver_download_bytes_total [1-9]", text, re.M)
        assert "receiver_fallback_polls_total" in text
