"""Issue 12, "the first hour with the product": the client's side, over real HTTP on 127.0.0.1.

Against the simulator, or a tiny raw socket server for the hanging and refusing cases. Every wait is
for a condition, with a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from support import RunningSimulator

from openrouter_video import AsyncOpenRouterVideo, OpenRouterVideo, TransportError, VideoModel, estimate_cost
from openrouter_video._cli import cli
from openrouter_video._simulator import CATALOG

VEO = "google/veo-3.1"
EXECUTABLE = Path(sys.executable).with_name("openrouter-video")
RECEIVER_VARS = ("RECEIVER_PUBLIC_URL", "RECEIVER_URL", "RECEIVER_API_TOKEN")
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def env_for(
    base_url: str, api_key: str | None = "sk-or-test-key", **extra: str | None
) -> dict[str, str | None]:
    env: dict[str, str | None] = {name: None for name in RECEIVER_VARS}
    env.update(OPENROUTER_API_KEY=api_key, OPENROUTER_BASE_URL=base_url, OPENROUTER_WEBHOOK_SECRET=None)
    env.update(extra)
    return env


def run(sim: RunningSimulator, *args: str, **env: str | None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env_for(sim.api_base, sim.api_key, **env))


def error_lines(result: Result) -> list[str]:
    assert "Traceback" not in result.output
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def completed_job(sim: RunningSimulator, prompt: str = "a fox") -> str:
    with OpenRouterVideo(api_key=sim.api_key, base_url=sim.api_base) as api:
        return api.wait(api.submit(prompt, model=VEO, duration=4), first_interval=0.05, timeout=30).id


# -- 7. times are ISO 8601 UTC ----------------------------------------------------------------------


def test_times_are_iso_8601_utc_in_text_and_json(simulator: RunningSimulator) -> None:
    job_id = completed_job(simulator)
    text = run(simulator, "status", job_id)
    assert text.exit_code == 0, text.output
    [expires] = [
        line.split(":", 1)[1].strip() for line in text.stdout.splitlines() if line.startswith("expires_at")
    ]
    assert ISO_Z.match(expires), expires
    assert "UTC" not in text.stdout

    record = json.loads(run(simulator, "status", job_id, "--json").stdout)
    assert ISO_Z.match(record["expires_at"]), record

    model = run(simulator, "model", VEO)
    [created] = [
        line.split(":", 1)[1].strip() for line in model.stdout.splitlines() if line.startswith("created")
    ]
    assert created == "2026-03-23T14:45:48Z"
    assert json.loads(run(simulator, "model", VEO, "--json").stdout)["created"] == "2026-03-23T14:45:48Z"
    assert all(ISO_Z.match(m["created"]) for m in json.loads(run(simulator, "models", "--json").stdout))


# -- 10. a missing key and a base URL without /api/v1 ---------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["submit", "a fox", "-m", VEO, "--duration", "4"],
        ["status", "abcdefghijklmnopqrst"],
        ["wait", "abcdefghijklmnopqrst"],
        ["download", "abcdefghijklmnopqrst"],
    ],
    ids=["submit", "status", "wait", "download"],
)
def test_missing_api_key_is_said_before_sending(simulator: RunningSimulator, args: list[str]) -> None:
    before = simulator.state.counts()
    result = CliRunner().invoke(cli, args, env=env_for(simulator.api_base, api_key=None))
    assert result.exit_code == 2, result.output
    [line] = error_lines(result)
    assert "OPENROUTER_API_KEY" in line and "401" not in line
    assert simulator.state.counts() == before


def test_base_url_without_api_v1_names_the_url_and_the_fix(simulator: RunningSimulator) -> None:
    result = CliRunner().invoke(cli, ["models"], env=env_for(simulator.url, simulator.api_key))
    assert result.exit_code == 3, result.output
    [line] = error_lines(result)
    assert f"{simulator.url}/videos/models" in line
    assert f"did you mean {simulator.url}/api/v1?" in line


# -- 12. SIGTERM during wait is an interruption ------------------------------------------------------


def test_sigterm_during_wait_exits_130_with_the_resume_hint(simulator: RunningSimulator) -> None:
    with OpenRouterVideo(api_key=simulator.api_key, base_url=simulator.api_base) as api:
        job = api.submit("slow [sim:pending=60]", model=VEO)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECEIVER_", "OPENROUTER_"))}
    env.update(OPENROUTER_API_KEY=simulator.api_key, OPENROUTER_BASE_URL=simulator.api_base)
    proc = subprocess.Popen(
        [str(EXECUTABLE), "wait", job.id, "--poll-interval", "0.05"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # the status line: the wait loop is running
        assert f"job {job.id}: pending" in first
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130, rest
    assert f"interrupted: job {job.id} keeps running upstream" in rest
    assert f"openrouter-video wait {job.id}" in rest and "Traceback" not in rest


# -- 2. no silent five-minute hang ----------------------------------------------------------------


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers (or, with `refuse`, is a closed port)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                conn, _ = self.sock.accept()
                self.accepted.append(conn)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_models_against_a_silent_server_stops_at_the_deadline_with_one_line() -> None:
    with SilentServer() as server:
        started = time.monotonic()
        result = CliRunner().invoke(cli, ["--deadline", "1.5", "models"], env=env_for(server.api_base))
        took = time.monotonic() - started
    assert result.exit_code == 3, result.output
    assert took < 6, took
    [line] = error_lines(result)
    assert "no answer" in line and f"{server.api_base}/videos/models" in line and "deadline" in line


def test_json_calls_have_a_short_read_timeout_and_downloads_a_longer_one() -> None:
    with OpenRouterVideo(api_key="k", base_url="http://127.0.0.1:9/api/v1") as api:
        assert api.timeout.read is not None and api.timeout.read <= 30 and api.timeout.connect == 5
        assert api.download_timeout.read is not None and api.download_timeout.read > api.timeout.read


def test_each_retry_is_told_to_the_hook_and_the_library_prints_nothing(
    capfd: pytest.CaptureFixture[str],
) -> None:
    events: list[Any] = []
    with SilentServer() as server:
        api = OpenRouterVideo(
            api_key="k", base_url=server.api_base, timeout=0.3, max_retries=2, retry_initial=0.01,
            on_retry=events.append,
        )  # fmt: skip
        with api, pytest.raises(TransportError, match="no answer"):
            api.get("abcdefghijklmnopqrst")
    assert [(e.attempt, e.attempts, e.method) for e in events] == [(1, 3, "GET"), (2, 3, "GET")]
    assert all(isinstance(e.error, TransportError) and "videos/abcdefghijklmnopqrst" in e.url for e in events)
    assert capfd.readouterr() == ("", "")


def test_the_cli_prints_a_line_per_retry(simulator: RunningSimulator) -> None:
    # The first two polls of the job answer 503 (a middleware in front of the simulator).
    job_id = completed_job(simulator)
    calls = {"n": 0}
    original = simulator.app.middleware_stack

    async def flaky(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith(job_id) and calls["n"] < 2:
            calls["n"] += 1
            await send({"type": "http.response.start", "status": 503, "headers": [(b"retry-after", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        assert original is not None
        await original(scope, receive, send)

    simulator.app.middleware_stack = flaky
    result = run(simulator, "status", job_id)
    assert result.exit_code == 0, result.output
    retries = [line for line in result.stderr.splitlines() if line.startswith("retry: ")]
    assert len(retries) == 2, result.stderr
    assert "503" in retries[0] and "attempt 1 of 5" in retries[0] and "retrying in" in retries[0]
    assert "attempt 2 of 5" in retries[1]


def test_connection_refused_fails_fast_and_says_so() -> None:
    port = closed_port()
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["models"], env=env_for(f"http://127.0.0.1:{port}/api/v1"))
    took = time.monotonic() - started
    assert result.exit_code == 3, result.output
    assert took < 3, took
    [line] = error_lines(result)
    assert f"connection refused by 127.0.0.1:{port}" in line
    assert len([x for x in result.stderr.splitlines() if x.startswith("retry: ")]) <= 2


# -- cost before paying -----------------------------------------------------------------------------

SIM_MODELS = {entry["id"]: VideoModel.from_api(entry) for entry in CATALOG}


@pytest.mark.parametrize(
    ("model", "body", "usd", "upper"),
    [
        ("google/veo-3.1", {"duration": 4, "resolution": "720p", "generate_audio": False}, 0.80, False),
        ("google/veo-3.1", {"duration": 8, "resolution": "4K", "generate_audio": True}, 4.80, False),
        ("google/veo-3.1", {"duration": 4, "size": "3840x2160", "generate_audio": False}, 1.60, False),
        ("google/veo-3.1", {"duration": 4}, 2.40, True),  # 4K with audio: the most it can cost
        ("google/veo-3.1", {}, 4.80, True),  # the longest duration too
        ("google/veo-3.1-fast", {"duration": 6, "resolution": "720p", "generate_audio": True}, 0.72, False),
        ("openai/sora-2-pro", {"duration": 12, "resolution": "1080p"}, 6.00, False),
        ("kwaivgi/kling-v3.0-pro", {"duration": 5, "generate_audio": False}, 0.56, False),
        ("kwaivgi/kling-v3.0-pro", {"duration": 5, "generate_audio": True}, 0.84, False),
        ("alibaba/wan-2.6", {"duration": 5, "resolution": "720p", "frame_images": [{}]}, 0.50, False),
        (
            "x-ai/grok-imagine-video",
            {"duration": 5, "resolution": "480p", "frame_images": [{}]},
            0.252,
            False,
        ),
        ("runway/aleph-2", {"duration": 1}, 0.56, False),  # the minimum per generation
        ("minimax/hailuo-2.3", {"duration": 6}, 0.4902, False),
    ],
)
def test_estimates_from_the_catalogs_pricing_skus(
    model: str, body: dict[str, Any], usd: float, upper: bool
) -> None:
    estimate = estimate_cost(SIM_MODELS[model], body)
    assert estimate.usd == pytest.approx(usd), estimate
    assert estimate.upper_bound is upper and estimate.reason is None


@pytest.mark.parametrize(
    ("model", "body", "why"),
    [
        ("bytedance/seedance-2.0", {"duration": 5, "resolution": "720p"}, "video token"),
        ("black-forest-labs/flux-video-upscale", {"upscale_factor": 2}, "megapixel"),
        ("runway/aleph-2", {}, "no duration"),
        ("google/veo-3.1", {"duration": 4, "resolution": "480p"}, "480p"),
    ],
)
def test_no_estimate_rather_than_a_guess(model: str, body: dict[str, Any], why: str) -> None:
    estimate = estimate_cost(SIM_MODELS[model], body)
    assert estimate.usd is None and why in (estimate.reason or ""), estimate
    assert "unknown" in estimate.describe()


def test_models_shows_the_price_per_second(simulator: RunningSimulator) -> None:
    result = run(simulator, "models")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "720p,1080p: $0.40 with audio, $0.20 without; 4K: $0.60 with audio, $0.40 without" in rows[VEO]
    assert rows["openai/sora-2-pro"].endswith("720p: $0.30; 1080p: $0.50")
    assert rows["runway/gen-4.5"].endswith("$0.12")
    assert rows["bytedance/seedance-2.0"].endswith("per video token (no estimate)")


def test_submit_dry_run_validates_prints_body_and_estimate_and_sends_nothing(
    simulator: RunningSimulator,
) -> None:
    args = ["submit", "a fox", "-m", VEO, "--duration", "4", "--resolution", "720p", "--no-audio"]
    result = run(simulator, *args, "--dry-run")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["body"] == {
        "model": VEO, "prompt": "a fox", "duration": 4, "resolution": "720p", "generate_audio": False,
    }  # fmt: skip
    assert document["estimate"]["usd"] == pytest.approx(0.80)
    assert "estimated cost: $0.80" in result.stderr
    bad = run(simulator, "submit", "a fox", "-m", VEO, "--duration", "5", "--dry-run")
    assert bad.exit_code == 2 and len(error_lines(bad)) == 1  # validated against the catalog
    assert simulator.state.counts()["submits"] == 0


def test_submit_prints_the_estimate_then_sends(simulator: RunningSimulator) -> None:
    result = run(simulator, "submit", "a fox", "-m", VEO, "--duration", "4", "--max-cost", "3")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("estimated cost: at most $2.40"), lines
    assert any(line.startswith("submitted job") for line in lines[1:])
    assert simulator.state.counts()["submits"] == 1


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["-m", VEO, "--duration", "8", "--max-cost", "1"], "above --max-cost $1.00"),
        (["-m", "bytedance/seedance-2.0", "--duration", "5", "--max-cost", "100"], "cannot be estimated"),
    ],
)
def test_max_cost_refuses_before_sending(simulator: RunningSimulator, args: list[str], fragment: str) -> None:
    result = run(simulator, "submit", "a fox", *args)
    assert result.exit_code == 2, result.output
    [line] = error_lines(result)
    assert fragment in line
    assert simulator.state.counts()["submits"] == 0


# -- 8. download -o pitfalls --------------------------------------------------------------------------


def full_sha(sim: RunningSimulator, job_id: str) -> str:
    response = httpx.get(f"{sim.admin_url}/jobs/{job_id}", timeout=30)
    return str(response.json()["outputs"][0]["sha256"])


class ContentTap:
    """In front of the simulator: records each content request's Range header and answer status;
    can cut the first answer after `cut_after` bytes, or ignore Range headers."""

    def __init__(
        self, sim: RunningSimulator, *, cut_after: int | None = None, ignore_range: bool = False
    ) -> None:
        self.seen: list[tuple[str | None, int]] = []
        self.cut_after = cut_after
        self.ignore_range = ignore_range
        self.inner = sim.app.middleware_stack
        assert self.inner is not None, "make one request first: the stack is built lazily"
        sim.app.middleware_stack = self

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path.endswith("/content") or path.startswith("/storage/")):
            await self.inner(scope, receive, send)
            return
        headers = dict(scope["headers"])
        range_header = headers.get(b"range")
        if self.ignore_range:
            scope = {
                **scope,
                "headers": [(k, v) for k, v in scope["headers"] if k not in (b"range", b"if-range")],
            }
        cut = self.cut_after if not self.seen else None
        sent = {"bytes": 0}

        async def tapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.seen.append((range_header.decode() if range_header else None, message["status"]))
            if message["type"] == "http.response.body" and cut is not None:
                sent["bytes"] += len(message.get("body", b""))
                if sent["bytes"] > cut:
                    raise ConnectionResetError("cut by the test")
            await send(message)

        await self.inner(scope, receive, tapped)


def test_download_refuses_to_overwrite_without_force(simulator: RunningSimulator, tmp_path: Path) -> None:
    job_id = completed_job(simulator)
    out = tmp_path / "fox.mp4"
    out.write_bytes(b"precious")
    refused = run(simulator, "download", job_id, "-o", str(out))
    assert refused.exit_code == 2, refused.output
    [line] = error_lines(refused)
    assert str(out) in line and "--force" in line
    assert out.read_bytes() == b"precious"
    forced = run(simulator, "download", job_id, "-o", str(out), "--force")
    assert forced.exit_code == 0, forced.output
    assert hashlib.sha256(out.read_bytes()).hexdigest() == full_sha(simulator, job_id)


def test_download_to_dash_streams_to_stdout(
    simulator: RunningSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = completed_job(simulator)
    monkeypatch.chdir(tmp_path)
    result = run(simulator, "download", job_id, "-o", "-")
    assert result.exit_code == 0, result.stderr
    assert hashlib.sha256(result.stdout_bytes).hexdigest() == full_sha(simulator, job_id)
    assert list(tmp_path.iterdir()) == []  # no file named "-"
    assert f"sha256 {full_sha(simulator, job_id)}" in result.stderr


def test_download_into_a_missing_directory_is_refused(simulator: RunningSimulator, tmp_path: Path) -> None:
    job_id = completed_job(simulator)
    missing = tmp_path / "no" / "such"
    result = run(simulator, "download", job_id, "-o", str(missing / "fox.mp4"))
    assert result.exit_code == 2, result.output
    [line] = error_lines(result)
    assert f"directory {missing} does not exist" in line
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_download_resumes_with_a_range_request(
    simulator: RunningSimulator, tmp_path: Path
) -> None:
    job_id = completed_job(simulator, "a fox [sim:bytes=3000000]")
    tap = ContentTap(simulator, cut_after=1_500_000)
    out = tmp_path / "fox.mp4"
    result = run(simulator, "download", job_id, "-o", str(out))
    assert result.exit_code == 0, result.output
    first, second = tap.seen
    assert first == (None, 200)
    assert second[1] == 206 and second[0] is not None
    offset = int(re.fullmatch(r"bytes=(\d+)-", second[0]).group(1))  # type: ignore[union-attr]
    assert 0 < offset <= 1_500_000
    sha = full_sha(simulator, job_id)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == sha and out.stat().st_size == 3_000_000
    assert f"sha256 {sha}" in result.stdout  # the hash covers the whole file, the kept prefix too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fox.mp4"]


def test_a_kept_part_is_resumed_by_the_next_run_or_fetched_whole_when_range_is_ignored(
    simulator: RunningSimulator, tmp_path: Path
) -> None:
    job_id = completed_job(simulator, "a fox [sim:bytes=600000]")
    whole = tmp_path / "whole.mp4"
    with OpenRouterVideo(api_key=simulator.api_key, base_url=simulator.api_base) as api:
        api.download(job_id, dest=whole)
    sha = full_sha(simulator, job_id)

    def interrupted(name: str) -> Path:  # what an earlier, interrupted run left behind
        out = tmp_path / name
        Path(f"{out}.part").write_bytes(whole.read_bytes()[:250_000])
        Path(f"{out}.part.json").write_text(json.dumps({"job_id": job_id, "size": 600_000, "etag": None}))
        return out

    tap = ContentTap(simulator)
    out = interrupted("resumed.mp4")
    result = run(simulator, "download", job_id, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert tap.seen == [("bytes=250000-", 206)]
    assert hashlib.sha256(out.read_bytes()).hexdigest() == sha and f"sha256 {sha}" in result.stdout

    tap.ignore_range = True
    tap.seen.clear()
    out = interrupted("fallback.mp4")
    result = run(simulator, "download", job_id, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert tap.seen == [("bytes=250000-", 200)]  # asked to resume, got the whole file: used it
    assert hashlib.sha256(out.read_bytes()).hexdigest() == sha and out.stat().st_size == 600_000
    assert not Path(f"{out}.part").exists() and not Path(f"{out}.part.json").exists()


def test_the_async_client_resumes_the_same_way(simulator: RunningSimulator, tmp_path: Path) -> None:
    job_id = completed_job(simulator, "a fox [sim:bytes=3000000]")
    tap = ContentTap(simulator, cut_after=1_500_000)
    out = tmp_path / "fox.mp4"

    async def download() -> Any:
        async with AsyncOpenRouterVideo(api_key=simulator.api_key, base_url=simulator.api_base) as api:
            return await api.download(job_id, dest=out)

    result = asyncio.run(download())
    assert [status for _, status in tap.seen] == [200, 206] and tap.seen[1][0] is not None
    assert result.sha256 == full_sha(simulator, job_id) and result.bytes == 3_000_000
    assert hashlib.sha256(out.read_bytes()).hexdigest() == result.sha256
