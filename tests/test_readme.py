"""The README's examples, run as written against the simulator and a real receiver, so they cannot drift.

Every fenced block of README.md is either run here (`sh` and `python` blocks) or marked, on a line
before it, with `<!-- readme-test: skip (why) -->` (it needs the real OpenRouter, root, the network,
or is not code); an unmarked block of any other kind fails `test_every_block_is_run_or_marked`.

How a block runs, in a temporary directory (with `.venv` linked to this checkout's):
- `sh`: one `bash -euo pipefail` script, with `OPENROUTER_BASE_URL` pointing at a simulator run by
  this test (so `export OPENROUTER_API_KEY=sk-or-...` works: it accepts any key), `JOB_ID` standing
  for a finished job of that simulator, and `make venv` a no-op (other targets fail). Every
  `--port N` becomes a free port; a line starting `openrouter-video simulate` or `serve` is started
  in the background and waited for. Output files (`-o x.mp4`) must be videos of the requested length.
- `python`: the block as a script, with the same environment plus `OPENROUTER_API_KEY`.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import pytest
from click.testing import CliRunner
from receiver_support import free_port
from support import RunningSimulator, fast_simulator_config, running_simulator

from openrouter_video import OpenRouterVideo
from openrouter_video._cli.group import cli as cli_main
from openrouter_video._simulator import SimulatorConfig

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\b")
RUNNABLE = ("sh", "python")
BACKGROUND = ("openrouter-video simulate", "openrouter-video serve")
BLOCK_TIMEOUT = 60


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    text: str
    skipped: bool

    @property
    def name(self) -> str:
        return f"line{self.line}-{self.lang or 'plain'}"


def readme_blocks() -> list[Block]:
    blocks: list[Block] = []
    lines = README.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            lang, start = lines[i][3:].strip(), i
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            text = "\n".join(lines[start + 1 : end]) + "\n"
            blocks.append(Block(start + 1, lang, text, bool(SKIP.search(before))))
            i = end
        i += 1
    return blocks


BLOCKS = readme_blocks()


def test_every_block_is_run_or_marked() -> None:
    unmarked = [b.name for b in BLOCKS if not b.skipped and b.lang not in RUNNABLE]
    assert not unmarked, f"README blocks neither runnable nor marked `<!-- readme-test: skip -->`: {unmarked}"
    assert [b for b in BLOCKS if not b.skipped], "no README example runs at all"


# -- running them ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    # No api_key: any non-empty key is accepted, like the README's `sk-or-...` placeholder.
    with running_simulator(fast_simulator_config(api_key=None)) as running:
        yield running


@pytest.fixture(scope="module")
def finished_job(sim: RunningSimulator) -> str:
    with OpenRouterVideo(api_key="sk-or-readme", base_url=sim.api_base) as api:
        return api.wait(api.submit("the README's JOB_ID", model="google/veo-3.1", duration=4), timeout=30).id


def _env(sim: RunningSimulator, job_id: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROUTER_", "RECEIVER_"))}
    env.update(
        OPENROUTER_BASE_URL=sim.api_base,
        JOB_ID=job_id,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    return env


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run in its own process group, killed whole (servers it started included) afterwards."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=BLOCK_TIMEOUT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{text[-4000:]}"
    return text


_PRELUDE = """\
make() {  # the venv exists: the test runs inside it; any other target is not an offline example
  [ "$*" = venv ] || { echo "README block runs make $*: mark it readme-test: skip" >&2; return 1; }
}
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
wait_http() {
  python - "$1" <<'PY'
import sys, time, httpx
for _ in range(300):
    try:
        if httpx.get(sys.argv[1], headers={"Authorization": "Bearer any"}, timeout=1).status_code < 500:
            sys.exit(0)
    except httpx.HTTPError:
        pass
    time.sleep(0.1)
sys.exit(f"not up: {sys.argv[1]}")
PY
}
"""


def shell_script(text: str, ports: dict[str, int]) -> str:
    """The block as a script: ports rewritten, servers in the background, JOB_ID from the env."""
    for old, new in ports.items():
        text = re.sub(rf"(--port |:){old}\b", rf"\g<1>{new}", text)
    text = re.sub(r"\bJOB_ID\b", '"$JOB_ID"', text)
    lines: list[str] = []
    for line in text.replace("\\\n", " ").splitlines():
        command = line.split("  #")[0].strip()
        if command.startswith(BACKGROUND):
            port = re.search(r"--port (\d+)", command)
            assert port, f"a server line needs --port: {line}"
            path = "/api/v1/videos/models" if "simulate" in command else "/healthz"
            lines += [
                f"{command} > server-{port[1]}.log 2>&1 &",
                f"wait_http http://127.0.0.1:{port[1]}{path}",
            ]
        else:
            lines.append(line)
    return _PRELUDE + "\n".join(lines) + "\n"


def check_videos(block: Block, cwd: Path) -> None:
    """Every file the block writes with `-o` / `dest=` is a playable video of the asked length."""
    names = re.findall(r"(?:-o |dest=\")([\w.-]+\.mp4)", block.text)
    durations = {int(d) for d in re.findall(r"(?:--duration |duration=)(\d+)", block.text)}
    for name in names:
        with av.open(io.BytesIO((cwd / name).read_bytes())) as container:
            assert container.duration is not None
            assert container.duration / 1e6 in durations, (name, container.duration)
            frame = next(container.decode(video=0))
            assert frame.width > 0 and frame.height > 0


def _workdir(tmp_path: Path) -> Path:
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    return tmp_path


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.lang in RUNNABLE and not b.skipped], ids=lambda b: b.name
)
def test_readme_example_runs(block: Block, sim: RunningSimulator, finished_job: str, tmp_path: Path) -> None:
    cwd, env = _workdir(tmp_path), _env(sim, finished_job)
    if block.lang == "python":
        (cwd / "example.py").write_text(block.text)
        # Its comment says the key and base URL come from the environment: the shell blocks export them.
        _run([sys.executable, "example.py"], cwd, {**env, "OPENROUTER_API_KEY": "sk-or-readme"})
    else:
        ports = {p: free_port() for p in re.findall(r"--port (\d+)", block.text)}
        script = shell_script(block.text, ports)
        if "openrouter-video serve" in block.text:
            script += receiver_follow_ups(ports)
        _run(["bash", "-euo", "pipefail", "-c", script], cwd, env)
    check_videos(block, cwd)


def receiver_follow_ups(ports: dict[str, int]) -> str:
    """After the receiver block: the README's own `webhook test` line against it, and its API."""
    (inline,) = re.findall(r"`(openrouter-video webhook test [^`]+)`", README.read_text())
    (port,) = ports.values()
    local = f"http://127.0.0.1:{port}"
    return textwrap.dedent(f"""
        {inline.replace("https://hooks.example.com", local)}
        test "$(python -c 'import httpx; print(httpx.get("{local}/openapi.json").status_code)')" = 200
        test "$(python -c 'import httpx; print(httpx.get("{local}/jobs").status_code)')" = 401
        ! openrouter-video jobs list --data-dir ./data | grep -q selftest-
        openrouter-video deliveries --data-dir ./data | grep -q "test (from"
    """)


# -- what the README and the help say ----------------------------------------------------------


def test_the_simulate_help_shows_the_real_default_timings_and_secret_spelling() -> None:
    result = CliRunner().invoke(cli_main, ["simulate", "--help"], terminal_width=200)
    assert result.exit_code == 0
    help_text = " ".join(result.output.split())
    defaults = SimulatorConfig()
    assert f"Seconds a job stays pending. [default: ({defaults.pending_seconds:g})" in help_text
    assert f"Seconds a job stays in_progress. [default: ({defaults.in_progress_seconds:g})" in help_text
    public = next(line for line in README.read_text().split("\n\n") if line.startswith("All but the webhook"))
    assert "/openapi.json" in public  # served without the token (checked live after the receiver block)
    for text in (help_text, README.read_text(), (ROOT / "examples" / "demo.py").read_text()):
        # OpenRouter's secrets are spelled whsec-...; whsec_ is the Standard Webhooks secret of the
        # receiver's own notifications to apps (RECEIVER_NOTIFY_SECRET), and only that.
        stray = [line for line in text.splitlines() if "whsec_" in line and "NOTIFY_SECRET" not in line]
        assert not stray, stray


def test_the_demo_ends_with_a_command_that_shows_its_records(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROUTER_", "RECEIVER_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    assert "$(BIN)/python examples/demo.py" in (ROOT / "Makefile").read_text()  # what `make demo` runs
    out = _run([sys.executable, str(ROOT / "examples" / "demo.py")], tmp_path, env)
    commands = [line.strip() for line in out.splitlines() if line.strip().startswith("openrouter-video ")]
    listing = next(c for c in commands if c.startswith("openrouter-video jobs list"))
    shown = _run(shlex.split(listing), tmp_path, env)
    assert shown.count("gen-vid-") == 4, shown  # three jobs, then the app's
    assert "(the same: paid once)" in out and "signature verified with standardwebhooks" in out, out
