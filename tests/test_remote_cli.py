"""The receiver from anywhere (issue 12): `jobs list|show`, `deliveries` and `reprocess` over real HTTP.

A receiver runs under uvicorn on loopback with a simulator behind it; the commands are the client's
(`openrouter_video._cli.cli`, as the console script runs them) with `--receiver URL` and the token in
RECEIVER_API_TOKEN. The same commands with `--data-dir` read the database on the server's shell and
must print the same records.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from receiver_support import API_TOKEN, RunningReceiver, receiver_settings, running_receiver, signed_event
from support import RunningSimulator, running_simulator

import openrouter_video._cli as cli_module
from openrouter_video import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    AuthenticationError,
    NotFoundError,
    OpenRouterVideo,
    ReceiverClient,
    sign,
)
from openrouter_video._cli import cli
from openrouter_video.receiver.storage.sqlite import deliveries as sqlite_deliveries

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
WEBHOOK_JOBS = [f"jobRemote{n}" for n in range(6)]


def run(*args: str, token: str | None = API_TOKEN, **env: str | None) -> Result:
    """The console script's command line, with a clean receiver environment plus `env`."""
    base: dict[str, str | None] = {
        "RECEIVER_URL": None,
        "RECEIVER_DATA_DIR": None,
        "RECEIVER_API_TOKEN": token,
    }
    base.update(env)
    return CliRunner().invoke(cli, list(args), env=base, catch_exceptions=False)


def ok(*args: str, **env: str | None) -> Result:
    result = run(*args, **env)
    assert result.exit_code == 0, result.output
    return result


def one_error_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def post_event(receiver: RunningReceiver, sim: RunningSimulator, data: dict[str, Any]) -> None:
    body, headers = signed_event(sim.secret, data)
    assert httpx.post(receiver.webhook_url, content=body, headers=headers).status_code == 200


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A receiver holding one downloaded job, six webhook-only jobs (created in order, `since`
    between the third and the fourth) and one stored delivery that is not an event (failed)."""
    data_dir = str(tmp_path_factory.mktemp("remote") / "data")
    with running_simulator() as sim, running_receiver(receiver_settings(data_dir, sim)) as rx:
        with OpenRouterVideo(api_key=sim.api_key, base_url=sim.api_base) as api:
            job = api.submit(
                "a red fox in snow", model="google/veo-3.1", duration=4, callback_url=rx.webhook_url
            )
        # Registered as `submit` does with RECEIVER_URL set: the receiver then knows the prompt.
        registration = {"id": job.id, "model": "google/veo-3.1", "prompt": "a red fox in snow"}
        assert rx.post("/jobs", json=registration).status_code in (200, 201)
        rx.wait_downloaded(job.id)
        since = None
        for n, job_id in enumerate(WEBHOOK_JOBS):
            if n == 3:
                time.sleep(0.05)
                since = time.time()
                time.sleep(0.05)
            post_event(rx, sim, {"id": job_id, "status": "failed" if n % 2 else "in_progress", "error": "x"})
            time.sleep(0.01)
        # A verified body that is no event: stored, then marked failed by the applier.
        body = b"not json at all"
        headers = {SIGNATURE_HEADER: sign(sim.secret, body), IDEMPOTENCY_HEADER: "junk-1"}
        assert httpx.post(rx.webhook_url, content=body, headers=headers).status_code == 200
        rx.applied()
        yield {"rx": rx, "sim": sim, "job": job.id, "since": since, "data_dir": data_dir}


def test_jobs_list_as_a_table_and_as_json_over_http(world) -> None:
    url = world["rx"].url
    table = ok("jobs", "list", "--receiver", url).stdout.splitlines()
    assert table[0].split() == ["JOB", "STATUS", "MODEL", "CREATED", "SOURCE"]
    assert [line.split()[0] for line in table[1:]] == [*reversed(WEBHOOK_JOBS), world["job"]]  # newest first
    assert all(ISO.match(line.split()[3]) for line in table[1:])
    listed = json.loads(ok("jobs", "list", "--json", RECEIVER_URL=url).stdout)  # RECEIVER_URL alone will do
    assert [j["id"] for j in listed] == [line.split()[0] for line in table[1:]]
    assert all(ISO.match(j["created_at"]) and ISO.match(j["updated_at"]) for j in listed)
    failed = json.loads(ok("jobs", "list", "--receiver", url, "--status", "failed", "--json").stdout)
    assert sorted(j["id"] for j in failed) == ["jobRemote1", "jobRemote3", "jobRemote5"]


def test_jobs_list_since_and_paging(world) -> None:
    url = world["rx"].url
    since = (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(world["since"]))
        + f"{world['since'] % 1:.3f}"[1:]
        + "Z"
    )
    recent = json.loads(ok("jobs", "list", "--receiver", url, "--since", since, "--json").stdout)
    assert [j["id"] for j in recent] == ["jobRemote5", "jobRemote4", "jobRemote3"]
    unix = json.loads(ok("jobs", "list", "--receiver", url, "--since", str(world["since"]), "--json").stdout)
    assert unix == recent

    first = ok("jobs", "list", "--receiver", url, "--limit", "3", "--json")
    assert [j["id"] for j in json.loads(first.stdout)] == ["jobRemote5", "jobRemote4", "jobRemote3"]
    cursor = re.search(r"--cursor (\S+)", first.stderr).group(1)
    second = ok("jobs", "list", "--receiver", url, "--limit", "3", "--cursor", cursor, "--json")
    assert [j["id"] for j in json.loads(second.stdout)] == ["jobRemote2", "jobRemote1", "jobRemote0"]
    every = ok("jobs", "list", "--receiver", url, "--limit", "2", "--all", "--json")
    assert [j["id"] for j in json.loads(every.stdout)] == [*reversed(WEBHOOK_JOBS), world["job"]]
    assert "--cursor" not in every.stderr  # nothing more to fetch
    bad = run("jobs", "list", "--receiver", url, "--cursor", "garbage")
    assert bad.exit_code == 3 and "cursor" in one_error_line(bad)


def test_jobs_show_human_and_json(world) -> None:
    url, job_id = world["rx"].url, world["job"]
    record = json.loads(ok("jobs", "show", job_id, "--receiver", url, "--json").stdout)
    assert record == world["rx"].job(job_id)
    [output] = record["outputs"]
    human = ok("jobs", "show", job_id, "--receiver", url).stdout
    assert re.search(r"^status:\s+completed$", human, re.M)
    assert re.search(r"^model:\s+google/veo-3.1$", human, re.M)
    assert re.search(r"^prompt:\s+a red fox in snow$", human, re.M)
    assert re.search(rf"^created:\s+{record['created_at']}$", human, re.M)
    assert f"{output['bytes']} bytes" in human and output["sha256"] in human and " done " in human
    timeline = human.split("events:", 1)[1].splitlines()[1:]
    assert len(timeline) == len(record["events"]) and all(ISO.match(line.split()[0]) for line in timeline)
    assert any("downloaded" in line for line in timeline)

    missing = run("jobs", "show", "jobNoSuchThing", "--receiver", url)
    assert missing.exit_code == 3 and "jobNoSuchThing" in one_error_line(missing)


def test_deliveries_json_and_state_filter_never_show_a_body(world) -> None:
    url = world["rx"].url
    every = json.loads(ok("deliveries", "--receiver", url, "--json").stdout)
    assert len(every) == len(world["rx"].deliveries()) >= len(WEBHOOK_JOBS) + 2
    assert [d["id"] for d in every] == sorted((d["id"] for d in every), reverse=True)
    for delivery in every:
        assert not {"body", "headers", "signature"} & set(delivery)
        assert ISO.match(delivery["received_at"]) and ISO.match(delivery["applied_at"])
    [failed] = json.loads(ok("deliveries", "--receiver", url, "--state", "failed", "--json").stdout)
    assert failed["idempotency_key"] == "junk-1" and "not JSON" in failed["error"]
    assert json.loads(ok("deliveries", "--receiver", url, "--unprocessed", "--json").stdout) == [failed]
    assert json.loads(ok("deliveries", "--receiver", url, "--state", "pending", "--json").stdout) == []
    applied = json.loads(ok("deliveries", "--receiver", url, "--state", "applied", "--json").stdout)
    assert len(applied) == len(every) - 1 and all(d["state"] == "applied" for d in applied)
    table = ok("deliveries", "--receiver", url, "--limit", "2").stdout
    assert "UNPROCESSED: " in table and len(table.splitlines()) == 2
    paged = json.loads(ok("deliveries", "--receiver", url, "--limit", "3", "--all", "--json").stdout)
    assert paged == every


def test_a_wrong_or_missing_token_is_one_line_and_exit_3(world, tmp_path) -> None:
    url = world["rx"].url
    for result in (
        run("jobs", "list", "--receiver", url, token="not-the-token"),
        run("deliveries", "--receiver", url, token=None),
        run("reprocess", "--receiver", url, token="not-the-token"),
    ):
        assert result.exit_code == 3
        line = one_error_line(result)
        assert "401" in line and "RECEIVER_API_TOKEN" in line and API_TOKEN not in line
        assert result.stdout == ""
    token_file = tmp_path / "token"
    token_file.write_text(API_TOKEN + "\n")
    listed = ok("jobs", "list", "--receiver", url, "--token-file", str(token_file), "--json", token=None)
    assert len(json.loads(listed.stdout)) == len(WEBHOOK_JOBS) + 1
    closed = run("jobs", "list", "--receiver", "http://127.0.0.1:9")
    assert closed.exit_code == 3 and "could not reach the receiver" in one_error_line(closed)


def test_local_mode_on_the_servers_shell_prints_the_same_records(world) -> None:
    url, data_dir, job_id = world["rx"].url, world["data_dir"], world["job"]
    for args in (
        ["jobs", "list"],
        ["jobs", "list", "--json", "--status", "failed"],
        ["deliveries", "--json"],
    ):
        assert ok(*args, "--data-dir", data_dir).stdout == ok(*args, "--receiver", url).stdout
    # RECEIVER_DATA_DIR and no URL: local too; the local record also says where each file is.
    local = json.loads(ok("jobs", "show", job_id, "--json", RECEIVER_DATA_DIR=data_dir).stdout)
    remote = world["rx"].job(job_id)
    assert local["outputs"][0].pop("path").endswith(".mp4")
    assert local == remote
    human = ok("jobs", "show", job_id, "--data-dir", data_dir).stdout
    assert re.search(r"^status:\s+completed$", human, re.M) and local["outputs"][0]["sha256"] in human
    both = run("jobs", "list", "--receiver", url, "--data-dir", data_dir)
    assert both.exit_code == 2 and "not both" in one_error_line(both)
    # A typed --receiver beats RECEIVER_DATA_DIR from the environment.
    typed = ok("jobs", "list", "--receiver", url, "--json", RECEIVER_DATA_DIR="/nonexistent")
    assert len(json.loads(typed.stdout)) == len(WEBHOOK_JOBS) + 1


def test_without_a_url_or_the_receiver_extra_it_says_what_to_set(monkeypatch) -> None:
    real = cli_module.entry_points
    monkeypatch.setattr(
        cli_module,
        "entry_points",
        lambda group: [] if group == "openrouter_video.local_commands" else real(group=group),
    )
    for args in (["jobs", "list"], ["jobs", "show", "jobX"], ["deliveries"], ["reprocess"]):
        result = run(*args)
        assert result.exit_code == 2
        line = one_error_line(result)
        assert "RECEIVER_URL" in line and "openrouter-video[receiver]" in line


def test_reprocess_over_http_applies_a_failed_delivery_once_the_cause_is_fixed(
    tmp_path, simulator, monkeypatch
) -> None:
    original = sqlite_deliveries.apply_job_update

    def broken(conn, job, **kwargs):
        if job.id == "jobBroken1":
            raise RuntimeError("a bug in applying this event")
        return original(conn, job, **kwargs)

    with running_receiver(receiver_settings(str(tmp_path / "data"), simulator)) as rx:
        monkeypatch.setattr(sqlite_deliveries, "apply_job_update", broken)
        post_event(rx, simulator, {"id": "jobBroken1", "status": "failed", "error": "upstream said no"})
        post_event(rx, simulator, {"id": "jobFine1", "status": "in_progress"})
        rx.applied()
        [stuck] = json.loads(ok("deliveries", "--receiver", rx.url, "--state", "failed", "--json").stdout)
        assert "a bug in applying this event" in stuck["error"]
        assert run("jobs", "show", "jobBroken1", "--receiver", rx.url).exit_code == 3

        still = json.loads(ok("reprocess", str(stuck["id"]), "--receiver", rx.url, "--json").stdout)
        assert still["applied"] == 0 and still["unprocessed"] == 1  # the cause is not fixed yet

        monkeypatch.setattr(sqlite_deliveries, "apply_job_update", original)  # the fix
        result = ok("reprocess", "--receiver", rx.url)
        assert result.stdout.startswith("reprocessed 1 deliveries: 1 applied, 0 still unprocessed")
        record = json.loads(ok("jobs", "show", "jobBroken1", "--receiver", rx.url, "--json").stdout)
        assert record["status"] == "failed" and record["error"] == "upstream said no"
        assert json.loads(ok("deliveries", "--receiver", rx.url, "--unprocessed", "--json").stdout) == []
        nothing = ok("reprocess", "--receiver", rx.url)
        assert nothing.stdout.startswith("reprocessed 0 deliveries")


def test_receiver_client_pages_and_maps_errors(world) -> None:
    rx = world["rx"]
    with ReceiverClient(rx.url, API_TOKEN) as client:
        assert [j["id"] for j in client.jobs(page_size=2)] == [*reversed(WEBHOOK_JOBS), world["job"]]
        assert [j["id"] for j in client.jobs(status="failed", since=world["since"])] == [
            "jobRemote5",
            "jobRemote3",
        ]
        assert client.job(world["job"])["status"] == "completed"
        assert len(list(client.deliveries(page_size=3))) == len(rx.deliveries())
        assert [d["idempotency_key"] for d in client.deliveries(state="failed")] == ["junk-1"]
        with pytest.raises(NotFoundError):
            client.job("jobNoSuchThing")
        assert "token" not in repr(client) and API_TOKEN not in repr(client)
    with ReceiverClient(rx.url, "wrong") as client, pytest.raises(AuthenticationError) as caught:
        client.job(world["job"])
    assert caught.value.status_code == 401
