"""What `pip install openrouter-video` puts on a machine: one namespace of our own, and the server stack
only with the extra that needs it. A real wheel, installed into a fresh virtual environment."""

from __future__ import annotations

import email.parser
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*argv: str | os.PathLike[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=check, env=env, timeout=300, **kwargs
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Build isolation, as `pip install .` does: the build gets the setuptools pyproject.toml asks for.
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, ROOT)
    (built,) = out.glob("openrouter_video-*.whl")
    return built


def test_the_wheel_has_one_namespace_and_a_client_that_needs_only_httpx_and_click(wheel) -> None:
    with zipfile.ZipFile(wheel) as zf:
        tops = {name.split("/")[0] for name in zf.namelist()}
        metadata = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(zf.read(metadata).decode())
        names = set(zf.namelist())
    assert {t for t in tops if not t.endswith(".dist-info")} == {"openrouter_video"}
    assert (
        "openrouter_video/receiver/app.py" in names
        and "openrouter_video/_simulator/samples/1280x720.mp4" in names
    )
    # Each storage backend ships (PostgreSQL's is imported only when configured: nothing else would notice).
    assert {
        "openrouter_video/receiver/storage/sqlite/dashboard.py",
        "openrouter_video/receiver/storage/postgres/dashboard.py",
    } <= names
    # The dashboard's templates, stylesheet and script ship with it (package data).
    assert {
        "openrouter_video/receiver/ui/templates/jobs.html",
        "openrouter_video/receiver/ui/static/app.css",
        "openrouter_video/receiver/ui/static/app.js",
    } <= names
    required = sorted(
        r.split(">")[0].split(";")[0].strip() for r in meta.get_all("Requires-Dist") if "extra" not in r
    )
    assert required == ["click", "httpx"]
    assert {"receiver", "simulator"} <= set(meta.get_all("Provides-Extra"))


def test_a_fresh_venv_gets_a_working_client_then_a_working_receiver_with_the_extra(wheel, tmp_path) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python, cli = venv / "bin" / "python", venv / "bin" / "openrouter-video"
    installed = _run(python, "-m", "pip", "install", "-q", wheel, check=False)
    if installed.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"pip install of the wheel failed: {installed.stderr[-500:]}")
        pytest.skip(f"pip could not install the wheel's dependencies here: {installed.stderr.strip()[-200:]}")
    outside = {"cwd": tmp_path}  # not the repository: its folders must not be importable by accident
    assert _run(python, "-c", "import openrouter_video; print(openrouter_video.OpenRouterVideo)", **outside)
    for module in ("client", "receiver", "starlette", "uvicorn"):
        missing = _run(python, "-c", f"import {module}", check=False, **outside)
        assert missing.returncode != 0 and "ModuleNotFoundError" in missing.stderr, module
    assert "submit" in _run(cli, "--help", **outside).stdout
    serve = _run(cli, "serve", "--help", check=False, **outside)
    assert serve.returncode != 0
    assert "pip install 'openrouter-video[receiver]'" in serve.stderr and "Traceback" not in serve.stderr
    simulate = _run(cli, "simulate", check=False, **outside)
    assert simulate.returncode != 0 and "pip install 'openrouter-video[simulator]'" in simulate.stderr

    _run(python, "-m", "pip", "install", "-q", f"{wheel}[receiver]")
    assert _run(python, "-c", "import openrouter_video.receiver.app", **outside)
    assert "Run the webhook receiver" in _run(cli, "serve", "--help", **outside).stdout
