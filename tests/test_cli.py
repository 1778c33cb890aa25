"""`openrouter-video` against the simulator: CliRunner for most cases, real subprocesses for a few."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import click
import httpx
import pytest
from click.testing import CliRunner, Result
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support import RunningSimulator, UvicornThread

import openrouter_video._cli as cli_module
from openrouter_video import OpenRouterVideo
from openrouter_video._cli import DownloadProgress, StatusDisplay, cli
from openrouter_video._simulator import CATALOG

VEO = "google/veo-3.1"
EXECUTABLE = Path(sys.executable).with_name("openrouter-video")
RECEIVER_VARS = ("RECEIVER_PUBLIC_URL", "RECEIVER_URL", "RECEIVER_API_TOKEN")


# -- helpers ---------------------------------------------------------------------------------------


def cli_env(sim: RunningSimulator, **extra: str | None) -> dict[str, str | None]:
    env: dict[str, str | None] = {name: None for name in RECEIVER_VARS}
    env.update(
        OPENROUTER_API_KEY=sim.api_key, OPENROUTER_BASE_URL=sim.api_base, OPENROUTER_WEBHOOK_SECRET=None
    )
    env.update(extra)
    return env


def run(sim: RunningSimulator, *args: str, **env: str | None) -> Result:
    return CliRunner().invoke(cli, list(args), env=cli_env(sim, **env), catch_exceptions=False)


def admin_job(sim: RunningSimulator, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{sim.admin_url}/jobs/{job_id}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def only_job_id(sim: RunningSimulator) -> str:
    [job] = sim.state.jobs.all()
    return job.id


def assert_one_error_line(result: Result, *fragments: str) -> str:
    """Exactly one `error:` line, last on stderr, containing `fragments`; never a traceback."""
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert lines[-1] == errors[0], result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def decode_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


class Recorder:
    """Records requests; answers POSTs with `post_status`, GETs with 404."""

    def __init__(self, post_status: int = 201) -> None:
        self.post_status = post_status
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["GET", "POST"])])

    async def handle(self, request: Request) -> Response:
        self.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "headers": dict(request.headers),
                "body": await request.body(),
            }
        )
        if request.method == "POST":
            return JSONResponse({"ok": self.post_status < 300}, status_code=self.post_status)
        return Response(status_code=404)

    def posts(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST" and r["path"] == path]


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, str]]:
    rec = Recorder()
    with UvicornThread(rec.app) as server:
        yield rec, server.url


# -- exit code 0 -----------------------------------------------------------------------------------


def test_submit_wait_downloads_a_playable_video(simulator: RunningSimulator, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    result = run(
        simulator,
        "submit",
        "a red fox [sim:bytes=400000]",
        "--model",
        VEO,
        "--duration",
        "4",
        "--wait",
        "--poll-interval",
        "0.02",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    job_id = only_job_id(simulator)
    expected = admin_job(simulator, job_id)["outputs"][0]
    assert out.stat().st_size == expected["size"] == 400_000
    assert decode_frames(out) > 0
    assert result.stdout.strip() == f"{out}\t400000 bytes\tsha256 {expected['sha256']}"
    # Non-TTY: one status line per change, on stderr; the job id is announced before waiting.
    assert f"submitted job {job_id}" in result.stderr
    assert f"job {job_id}: completed" in result.stderr
    assert "Traceback" not in result.output


def test_submit_without_wait_prints_the_id(simulator: RunningSimulator, tmp_path: Path) -> None:
    image = tmp_path / "first.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(32))
    result = run(
        simulator,
        "submit",
        "a fox",
        "-m",
        f"openrouter/{VEO}",
        "--duration",
        "6",
        "--resolution",
        "1080p",
        "--aspect-ratio",
        "9:16",
        "--seed",
        "5",
        "--no-audio",
        "--first-frame",
        str(image),
        "--provider-option",
        "google-vertex.negativePrompt=blurry",
        "--provider-option",
        "google-vertex.enhancePrompt=true",
        "--provider-option",
        'google-vertex.conditioningScale={"a": [1, 2]}',
        "--session-id",
        "s-1",
    )
    assert result.exit_code == 0, result.output
    job_id = only_job_id(simulator)
    assert result.stdout == f"{job_id}\n"
    assert "pending" in result.stderr and f"openrouter-video wait {job_id}" in result.stderr
    body = admin_job(simulator, job_id)["request"]
    assert body["model"] == VEO and body["duration"] == 6 and body["seed"] == 5
    assert body["generate_audio"] is False and body["session_id"] == "s-1"
    assert body["frame_images"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert body["provider"]["options"] == {
        "google-vertex": {
            "parameters": {
                "negativePrompt": "blurry",
                "enhancePrompt": True,
                "conditioningScale": {"a": [1, 2]},
            }
        }
    }
    assert "callback_url" not in body


def test_submit_json_record(simulator: RunningSimulator) -> None:
    result = run(simulator, "submit", "a fox", "-m", VEO, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["id"] == only_job_id(simulator) and record["status"] == "pending"
    assert record["polling_url"].endswith(record["id"])


def test_submit_wait_json_includes_download(simulator: RunningSimulator, tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    result = run(
        simulator, "submit", "a fox", "-m", VEO, "--wait", "--poll-interval", "0.02", "-o", str(out), "--json"
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["status"] == "completed" and record["unsigned_urls"]
    assert record["download"]["path"] == str(out)
    assert record["download"]["sha256"] == admin_job(simulator, record["id"])["outputs"][0]["sha256"]


def test_models_table_and_json(simulator: RunningSimulator) -> None:
    table = run(simulator, "models")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "ID", "DURATIONS", "RESOLUTIONS", "ASPECT", "RATIOS", "AUDIO", "SEED", "PRICE", "PER", "SECOND"
    ]  # fmt: skip
    ids = [line.split()[0] for line in lines[1:]]
    assert ids == sorted(m["id"] for m in CATALOG)
    veo = next(line for line in lines if line.startswith(VEO + " "))
    assert veo.split()[:6] == [VEO, "4,6,8", "720p,1080p,4K", "16:9,9:16", "yes", "yes"]
    lite = next(line for line in lines if line.startswith("google/veo-3.1-lite "))
    assert lite.split()[1] == "4,6,8"  # the catalog lists [8, 4, 6]: shown sorted

    as_json = run(simulator, "models", "--json")
    assert as_json.exit_code == 0
    models = json.loads(as_json.stdout)
    assert [m["id"] for m in models] == ids
    assert next(m for m in models if m["id"] == VEO)["supported_durations"] == [4, 6, 8]


def test_model_shows_all_fields(simulator: RunningSimulator) -> None:
    result = run(simulator, "model", f"openrouter/{VEO}")
    assert result.exit_code == 0, result.output
    for text in (
        "google/veo-3.1-20260320",
        "1280x720",
        "first_frame,last_frame",
        "negativePrompt",
        "price duration_seconds_with_audio",
        "0.40",
    ):
        assert text in result.stdout
    record = json.loads(run(simulator, "model", VEO, "--json").stdout)
    assert record["id"] == VEO and record["canonical_slug"] == "google/veo-3.1-20260320"
    unknown = run(simulator, "model", "google/veo-3.2")
    assert unknown.exit_code == 2
    assert_one_error_line(unknown, "did you mean", VEO)


def test_status_wait_and_download(simulator: RunningSimulator, tmp_path: Path) -> None:
    with OpenRouterVideo(api_key=simulator.api_key, base_url=simulator.api_base) as api:
        job = api.submit("a fox", model=VEO, duration=4)
    status = run(simulator, "status", job.id, "--json")
    assert status.exit_code == 0
    assert json.loads(status.stdout)["id"] == job.id
    assert json.loads(status.stdout)["status"] in ("pending", "in_progress", "completed")

    waited = run(simulator, "wait", job.id, "--poll-interval", "0.02", "--json")
    assert waited.exit_code == 0, waited.output
    record = json.loads(waited.stdout)
    assert record["status"] == "completed" and record["usage"]["cost"] > 0
    assert f"job {job.id}: completed" in waited.stderr

    human = run(simulator, "status", job.id)
    assert "status:" in human.stdout and "completed" in human.stdout and "cost:" in human.stdout

    out = tmp_path / "d.mp4"
    downloaded = run(simulator, "download", job.id, "-o", str(out))
    assert downloaded.exit_code == 0, downloaded.output
    sha = admin_job(simulator, job.id)["outputs"][0]["sha256"]
    assert downloaded.stdout.split("\t") == [str(out), f"{out.stat().st_size} bytes", f"sha256 {sha}\n"]
    assert decode_frames(out) > 0


# -- exit codes 1-4 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "text"),
    [("failed", "Content policy violation"), ("expired", "Job exceeded maximum time to live")],
)
def test_exit_1_when_the_job_is_unsuccessful(
    simulator: RunningSimulator, tmp_path: Path, outcome: str, text: str
) -> None:
    out = tmp_path / "never.mp4"
    result = run(
        simulator,
        "submit",
        f"a fox [sim:outcome={outcome}]",
        "-m",
        VEO,
        "--wait",
        "--poll-interval",
        "0.02",
        "-o",
        str(out),
    )
    assert result.exit_code == 1, result.output
    job_id = only_job_id(simulator)
    assert_one_error_line(result, job_id, outcome, text)
    assert not out.exists()


def test_wait_json_prints_record_then_exits_1(simulator: RunningSimulator) -> None:
    with OpenRouterVideo(api_key=simulator.api_key, base_url=simulator.api_base) as api:
        job = api.submit("x [sim:outcome=cancelled]", model=VEO)
    result = run(simulator, "wait", job.id, "--poll-interval", "0.02", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "cancelled"
    assert_one_error_line(result, "cancelled", "Job was cancelled")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["submit", "a fox", "-m", VEO, "--duration", "5"], "duration 5 is not supported by google/veo-3.1"),
        (["submit", "a fox", "-m", VEO, "--aspect-ratio", "1:1"], "aspect_ratio"),
        (["submit", "a fox", "-m", VEO, "--provider-option", "oops"], "SLUG.KEY=VALUE"),
        (["submit", "a fox", "-m", VEO, "--provider-option", "google-vertex.bogus=1"], "bogus"),
        (["submit", "a fox", "-m", VEO, "--first-frame", "/nonexistent/frame.png"], "no such file"),
        (["submit", "a fox"], "Missing option '--model'"),
        (["submit", "a fox", "-m", VEO, "--duration", "four"], "'four' is not a valid integer"),
        (["submit", "a fox", "-m", VEO, "-o", "x.mp4"], "needs --wait"),
        (["status", "../../etc/passwd"], "not a valid job id"),
        (["frobnicate"], "No such command"),
    ],
)
def test_exit_2_usage_and_validation(simulator: RunningSimulator, args: list[str], fragment: str) -> None:
    result = run(simulator, *args)
    assert result.exit_code == 2, result.output
    assert_one_error_line(result, fragment)
    assert simulator.state.counts()["submits"] == 0


def test_exit_2_without_api_key(simulator: RunningSimulator) -> None:
    result = run(simulator, "status", "job-abc123", OPENROUTER_API_KEY=None)
    assert result.exit_code == 2
    assert_one_error_line(result, "no API key")


def test_exit_3_api_error(simulator: RunningSimulator) -> None:
    result = run(simulator, "--api-key", "sk-wrong", "status", "job-abc123")
    assert result.exit_code == 3
    assert_one_error_line(result, "401", "Invalid API key", "OPENROUTER_API_KEY")
    missing = run(simulator, "download", "job-abc123")
    assert missing.exit_code == 3
    assert_one_error_line(missing, "404")


def test_exit_3_submission_outcome_unknown_prints_advice(simulator: RunningSimulator) -> None:
    simulator.config.faults.update({"submit_errors": [{"status": 500, "count": 3}]})
    result = run(simulator, "submit", "a fox", "-m", VEO, "--wait")
    assert result.exit_code == 3
    assert_one_error_line(result, "outcome unknown", "before submitting again", "pay twice")
    assert simulator.state.counts()["submits"] == 1


def test_exit_3_download_failure_after_submit_names_the_job(
    simulator: RunningSimulator, tmp_path: Path
) -> None:
    simulator.config.faults.update({"content_errors": [{"status": 403, "count": 2}]})
    out = tmp_path / "v.mp4"
    result = run(simulator, "submit", "a fox", "-m", VEO, "--wait", "--poll-interval", "0.02", "-o", str(out))
    assert result.exit_code == 3, result.output
    job_id = only_job_id(simulator)
    assert_one_error_line(result, "403", f"openrouter-video download {job_id} -o {out}")
    assert not out.exists() and not Path(f"{out}.part").exists()
    retried = run(simulator, "download", job_id, "-o", str(out))
    assert retried.exit_code == 0 and decode_frames(out) > 0


def test_verbose_shows_the_traceback(simulator: RunningSimulator) -> None:
    result = run(simulator, "-v", "--api-key", "sk-wrong", "status", "job-abc123")
    assert result.exit_code == 3
    assert "Traceback" in result.stderr and "AuthenticationError" in result.stderr
    assert "HTTP Request: GET" in result.stderr  # -v also logs requests


def test_exit_4_still_running_at_deadline(simulator: RunningSimulator) -> None:
    result = run(
        simulator,
        "submit",
        "slow [sim:pending=30]",
        "-m",
        VEO,
        "--wait",
        "--timeout",
        "0.3",
        "--poll-interval",
        "0.05",
    )
    assert result.exit_code == 4, result.output
    job_id = only_job_id(simulator)
    assert_one_error_line(result, job_id, "pending", f"openrouter-video wait {job_id}")
    assert simulator.state.counts()["submits"] == 1
    again = run(simulator, "wait", job_id, "--timeout", "0.1", "--poll-interval", "0.05")
    assert again.exit_code == 4


def test_interrupt_during_wait_exits_130_with_resume_hint(
    simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(OpenRouterVideo, "wait", interrupted)
    result = run(simulator, "submit", "a fox", "-m", VEO, "--wait")
    assert result.exit_code == 130
    job_id = only_job_id(simulator)
    assert f"openrouter-video wait {job_id}" in result.stderr
    assert "Traceback" not in result.output and "Aborted" not in result.output


def test_interrupt_during_download_hints_download(
    simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(OpenRouterVideo, "download", interrupted)
    result = run(simulator, "download", "job-abc123", "-o", "x.mp4")
    assert result.exit_code == 130
    assert "openrouter-video download job-abc123 -o x.mp4" in result.stderr


# -- receiver integration --------------------------------------------------------------------------


def test_receiver_public_url_sets_callback_url(
    simulator: RunningSimulator, recorder: tuple[Recorder, str]
) -> None:
    rec, rec_url = recorder
    result = run(simulator, "submit", "a fox", "-m", VEO, RECEIVER_PUBLIC_URL=rec_url + "/")
    assert result.exit_code == 0, result.output
    job = admin_job(simulator, result.stdout.strip())
    assert job["webhook_url"] == f"{rec_url}/webhooks/openrouter"
    assert job["request"]["callback_url"] == f"{rec_url}/webhooks/openrouter"

    explicit = run(
        simulator,
        "submit",
        "a fox",
        "-m",
        VEO,
        "--callback-url",
        f"{rec_url}/mine",
        RECEIVER_PUBLIC_URL=rec_url,
    )
    assert admin_job(simulator, explicit.stdout.strip())["webhook_url"] == f"{rec_url}/mine"


def test_receiver_registration(simulator: RunningSimulator, recorder: tuple[Recorder, str]) -> None:
    rec, rec_url = recorder
    result = run(
        simulator,
        "submit",
        "a fox",
        "-m",
        f"openrouter/{VEO}",
        RECEIVER_URL=rec_url + "/",
        RECEIVER_API_TOKEN="tok-123",
    )
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip()
    [post] = rec.posts("/jobs")
    assert post["headers"]["authorization"] == "Bearer tok-123"
    assert json.loads(post["body"]) == {"id": job_id, "model": VEO, "prompt": "a fox"}
    assert "warning" not in result.stderr


def test_receiver_registration_failure_is_a_warning(
    simulator: RunningSimulator, recorder: tuple[Recorder, str]
) -> None:
    rec, rec_url = recorder
    rec.post_status = 503
    result = run(simulator, "submit", "a fox", "-m", VEO, RECEIVER_URL=rec_url, RECEIVER_API_TOKEN="tok")
    assert result.exit_code == 0, result.output
    job_id = only_job_id(simulator)
    assert result.stdout == f"{job_id}\n"
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert job_id in warning and "503" in warning and "paid for" in warning
    assert len(rec.posts("/jobs")) == 1


def test_receiver_registration_needs_the_token(
    simulator: RunningSimulator, recorder: tuple[Recorder, str]
) -> None:
    rec, rec_url = recorder
    result = run(simulator, "submit", "a fox", "-m", VEO, RECEIVER_URL=rec_url)
    assert result.exit_code == 0
    assert rec.requests == []


# -- plugins ---------------------------------------------------------------------------------------


class FakeEntryPoint:
    def __init__(self, name: str, target: Any) -> None:
        self.name = name
        self.value = f"fake_plugin:{name}"
        self._target = target

    def load(self) -> Any:
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


@pytest.fixture
def fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    saved = (dict(cli.commands), cli._plugins_loaded, dict(cli.plugin_errors))
    builtins = {"models", "model", "submit", "status", "wait", "download", "simulate"}
    for name in set(cli.commands) - builtins:
        del cli.commands[name]
    cli._plugins_loaded = False
    cli.plugin_errors.clear()
    yield
    cli.commands.clear()
    cli.commands.update(saved[0])
    cli._plugins_loaded = saved[1]
    cli.plugin_errors.clear()
    cli.plugin_errors.update(saved[2])


def test_plugins_are_loaded_and_failures_are_contained(
    simulator: RunningSimulator, fresh_plugins: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    @click.command()
    def hello() -> None:
        """Say hello."""
        click.echo("hello from a plugin")

    @click.command()
    def impostor() -> None:
        click.echo("impostor")

    fakes = [
        FakeEntryPoint("serve", ImportError("No module named 'uvloop'")),
        FakeEntryPoint("hello", hello),
        FakeEntryPoint("models", impostor),
        FakeEntryPoint("odd", "not a command"),
    ]
    monkeypatch.setattr(
        cli_module, "entry_points", lambda group: fakes if group == cli_module.PLUGIN_GROUP else []
    )

    assert run(simulator, "hello").stdout == "hello from a plugin\n"
    models = run(simulator, "models", "--json")  # a plugin never shadows a built-in
    assert models.exit_code == 0 and json.loads(models.stdout)
    broken = run(simulator, "serve", "--port", "1")
    assert broken.exit_code == 3
    assert_one_error_line(broken, "'serve' is unavailable", "ImportError", "uvloop")
    odd = run(simulator, "odd")
    assert odd.exit_code == 3 and "not a click command" in odd.stderr
    helped = run(simulator, "--help")
    assert "hello" in helped.stdout and "serve" not in helped.stdout


def test_installed_receiver_plugins_do_not_break_help(simulator: RunningSimulator) -> None:
    result = run(simulator, "--help")
    assert result.exit_code == 0
    for command in ("models", "model", "submit", "status", "wait", "download", "simulate"):
        assert f"  {command} " in result.stdout
    assert "Exit codes:" in result.stdout


def test_every_command_has_an_example() -> None:
    runner = CliRunner()
    for name in ("models", "model", "submit", "status", "wait", "download", "simulate"):
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0
        assert "Examples:" in result.stdout and f"openrouter-video {name}" in result.stdout


def test_simulate_builds_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import openrouter_video._simulator as simulator_module

    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(simulator_module, "serve", lambda config, **kw: calls.append((config, kw)))
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--port",
            "9999",
            "--api-key",
            "k",
            "--pending",
            "0.5",
            "--in-progress",
            "1.5",
            "--workspace-webhook-url",
            "http://127.0.0.1:1/h",
        ],
        env={"OPENROUTER_WEBHOOK_SECRET": "whsec"},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    [(config, kwargs)] = calls
    assert (config.api_key, config.webhook_secret, config.pending_seconds, config.in_progress_seconds) == (
        "k",
        "whsec",
        0.5,
        1.5,
    )
    assert config.workspace_webhook_url == "http://127.0.0.1:1/h"
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 9999


# -- live display ----------------------------------------------------------------------------------


class FakeJob:
    def __init__(self, status: str) -> None:
        self.status = status


def test_status_display_rewrites_the_line_on_a_tty() -> None:
    stream = io.StringIO()
    with StatusDisplay("job-1", stream=stream, tty=True, tick=0.01) as display:
        display.update(FakeJob("pending"))  # type: ignore[arg-type]
        display.update(FakeJob("in_progress"))  # type: ignore[arg-type]
    text = stream.getvalue()
    assert "\n" not in text[:-1] and text.endswith("\n")
    assert text.count("\r") >= 3 and "job-1: in_progress (0s)" in text


def test_status_display_writes_one_line_per_change_otherwise() -> None:
    stream = io.StringIO()
    with StatusDisplay("job-1", stream=stream, tty=False) as display:
        display.update(FakeJob("pending"))  # type: ignore[arg-type]
        display.update(FakeJob("completed"))  # type: ignore[arg-type]
    assert stream.getvalue() == "job job-1: pending (0s)\njob job-1: completed (0s)\n"


def test_download_progress_only_on_a_tty() -> None:
    tty, plain = io.StringIO(), io.StringIO()
    for stream, is_tty in ((tty, True), (plain, False)):
        progress = DownloadProgress("downloading x.mp4", stream=stream, tty=is_tty, min_interval=0)
        progress(500_000, 1_000_000)
        progress(1_000_000, 1_000_000)
        progress.finish()
    assert "\r" in tty.getvalue() and "100%" in tty.getvalue() and "1.0 MB/1.0 MB" in tty.getvalue()
    assert plain.getvalue() == ""


# -- real subprocesses -----------------------------------------------------------------------------


def process_env(sim: RunningSimulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RECEIVER_VARS}
    env.update(OPENROUTER_API_KEY=sim.api_key, OPENROUTER_BASE_URL=sim.api_base)
    return env


def test_subprocess_submit_wait_download(simulator: RunningSimulator, tmp_path: Path) -> None:
    out = tmp_path / "sub.mp4"
    proc = subprocess.run(
        [
            str(EXECUTABLE),
            "submit",
            "a subprocess fox",
            "--model",
            VEO,
            "--duration",
            "4",
            "--wait",
            "--poll-interval",
            "0.02",
            "-o",
            str(out),
        ],
        env=process_env(simulator),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    job_id = only_job_id(simulator)
    sha = admin_job(simulator, job_id)["outputs"][0]["sha256"]
    assert proc.stdout.strip().endswith(f"sha256 {sha}")
    assert decode_frames(out) > 0


def test_subprocess_validation_error_is_one_line(simulator: RunningSimulator) -> None:
    proc = subprocess.run(
        [str(EXECUTABLE), "submit", "a fox", "-m", VEO, "--duration", "5"],
        env=process_env(simulator),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert simulator.state.counts()["submits"] == 0


def test_subprocess_sigint_during_wait(simulator: RunningSimulator) -> None:
    with OpenRouterVideo(api_key=simulator.api_key, base_url=simulator.api_base) as api:
        job = api.submit("slow [sim:pending=60]", model=VEO)
    proc = subprocess.Popen(
        [str(EXECUTABLE), "wait", job.id, "--poll-interval", "0.05"],
        env=process_env(simulator),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as at a terminal: a suite started in the background (`make test &`, a CI step
        # without job control) inherits SIGINT ignored, and the CLI would never see it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # the status line: the wait loop is running
        assert f"job {job.id}: pending" in first
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert f"openrouter-video wait {job.id}" in rest and "Traceback" not in rest
