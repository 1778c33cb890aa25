"""Shared pieces of the benchmarks: result rows, subprocess servers, ports, percentiles, tool checks."""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

PYTHON = sys.executable
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))

WEBHOOK_SECRET = "whsec-bench-0123456789abcdef"
API_KEY = "sk-or-bench-key"
API_TOKEN = "bench-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


# -- results -----------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table. `direction` says how `figure` must compare with `target`."""

    bench: str
    name: str
    figure: float | None
    unit: str
    target: float | None = None
    direction: str = ">="  # ">=", "<=", or "check" (pass/fail given in `passed`)
    passed: bool | None = None
    shown: str | None = None  # text instead of the formatted figure
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.figure is None or not self.target or self.direction == "check":
            return None
        return self.figure / self.target

    @property
    def result(self) -> str:
        if self.passed is not None:
            return "pass" if self.passed else "MISS"
        if self.figure is None:
            return "error"
        if self.target is None:
            return "info"
        ok = self.figure >= self.target if self.direction == ">=" else self.figure <= self.target
        return "pass" if ok else "MISS"

    def figure_text(self) -> str:
        if self.shown is not None:
            return self.shown
        return "-" if self.figure is None else f"{fmt_num(self.figure)} {self.unit}".strip()

    def target_text(self) -> str:
        if self.direction == "check":
            return "must hold"
        if self.target is None:
            return "(reported)"
        return f"{self.direction} {fmt_num(self.target)} {self.unit}".strip()


def fmt_num(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


@dataclass
class Context:
    quick: bool
    root: str
    rows: list[Row] = field(default_factory=list)
    commands: dict[str, list[str]] = field(default_factory=dict)
    foreign_cpu: dict[str, float] = field(default_factory=dict)
    cpu_probe_ms: dict[str, tuple[float, float]] = field(default_factory=dict)  # before, after
    profile_dir: str | None = None
    python_load: bool = False
    current: str = ""

    def log(self, message: str) -> None:
        print(f"[bench {self.current}] {message}", file=sys.stderr, flush=True)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        self.log(
            f"{row.name}: {row.figure_text()} (target {row.target_text()}) -> {row.result}"
            + (f"  [{row.note}]" if row.note else "")
        )
        return row

    def command(self, argv: Sequence[str] | str, env: dict[str, str] | None = None) -> None:
        """Remember a command as run (for the README section), once per benchmark."""
        text = argv if isinstance(argv, str) else shlex.join(str(a) for a in argv)
        if env:
            text = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + text
        text = text.replace(self.root, "$BENCH_DIR").replace(REPO + "/", "").replace(PYTHON, "python")
        listed = self.commands.setdefault(self.current, [])
        if text not in listed:
            listed.append(text)

    def workdir(self, name: str) -> str:
        path = os.path.join(self.root, name)
        os.makedirs(path, exist_ok=True)
        return path


# -- statistics --------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of unsorted values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# -- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server subprocess with its output in a log file; `stop()` sends SIGTERM, then SIGKILL."""

    def __init__(
        self,
        ctx: Context,
        name: str,
        argv: list[str],
        *,
        port: int,
        env: dict[str, str] | None = None,
        health: str = "/healthz",
        log_dir: str | None = None,
        record: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.name = name
        self.argv = argv
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = env
        self.health = health
        self.log_path = os.path.join(log_dir or ctx.root, f"{name}-{port}.log")
        self.process: subprocess.Popen[bytes] | None = None
        ctx.command(record or argv, None)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 30.0) -> Server:
        full_env = dict(os.environ)
        for key in list(full_env):
            if key.startswith(("OPENROUTER_", "RECEIVER_")):
                del full_env[key]
        full_env.update(self.env or {})
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {self.tail()}")
            try:
                if httpx.get(self.url + self.health, timeout=1.0).status_code < 500:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.name} did not answer {self.health} within {timeout}s: {self.tail()}"
                )
            time.sleep(0.05)

    def tail(self, n: int = 2000) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - n))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def receiver_server(
    ctx: Context,
    data_dir: str,
    *,
    base_url: str,
    name: str = "receiver",
    extra_env: dict[str, str] | None = None,
) -> Server:
    """`openrouter-video serve` on a free port with a fresh data dir (the production entry point)."""
    port = free_port()
    env = {
        "OPENROUTER_API_KEY": API_KEY,
        "OPENROUTER_BASE_URL": base_url,
        "OPENROUTER_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "RECEIVER_API_TOKEN": API_TOKEN,
        "RECEIVER_MIN_FREE_BYTES": "1",
        **(extra_env or {}),
    }
    argv = [PYTHON, "-m", "openrouter_video._cli", "serve", "--port", str(port), "--data-dir", data_dir]
    record = (
        "OPENROUTER_API_KEY=... OPENROUTER_BASE_URL=... OPENROUTER_WEBHOOK_SECRET=... RECEIVER_API_TOKEN=... "
        "openrouter-video serve --port $PORT --data-dir $DATA_DIR"
    )
    return Server(ctx, name, argv, port=port, env=env, log_dir=data_dir, record=record)


def simulator_server(ctx: Context, log_dir: str, *, pending: float = 0.0, in_progress: float = 0.0) -> Server:
    """`openrouter-video simulate` in its own process (so its memory and CPU are not the client's)."""
    port = free_port()
    argv = [
        PYTHON,
        "-m",
        "openrouter_video._cli",
        "simulate",
        "--port",
        str(port),
        "--api-key",
        API_KEY,
        "--webhook-secret",
        WEBHOOK_SECRET,
        "--pending",
        str(pending),
        "--in-progress",
        str(in_progress),
        "--log-level",
        "warning",
    ]
    record = (
        f"openrouter-video simulate --port $SIM_PORT --api-key $KEY --webhook-secret $SECRET "
        f"--pending {pending} --in-progress {in_progress} --log-level warning"
    )
    return Server(
        ctx, "simulator", argv, port=port, log_dir=log_dir, health="/_simulator/stats", record=record
    )


class BlackHole:
    """A listening socket that never accepts: connections to it open, requests get no answer.

    The receiver's fetcher is pointed here during the intake benchmarks, so the downloads that
    completed-job webhooks queue hang (like long real downloads) instead of failing in a tight loop.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/api/v1"

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def scratch(ctx: Context, name: str) -> Iterator[str]:
    """A directory under the run's root, removed afterwards whatever happens."""
    path = ctx.workdir(name)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def new_root() -> str:
    return tempfile.mkdtemp(prefix="openrouter-video-bench-")


# -- tools -------------------------------------------------------------------------------------


def ensure_wrk(ctx: Context) -> str | None:
    """The wrk binary; installed from apt when missing and we are root. None if unavailable."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        ctx.log("wrk is not installed and cannot be installed here (not root or no apt-get)")
        return None
    ctx.log("installing wrk with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for attempt in (
        ["apt-get", "install", "-y", "-q", "wrk"],
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "wrk"],
    ):
        subprocess.run(
            attempt, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300, check=False
        )
        if shutil.which("wrk"):
            return shutil.which("wrk")
    ctx.log("apt-get could not install wrk")
    return None


def pip_install(ctx: Context, *packages: str) -> None:
    """Install benchmark-only packages into this venv (they are not project dependencies)."""
    ctx.log(f"pip install {' '.join(packages)} (benchmark-only)")
    subprocess.run(
        [PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *packages],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=600,
        check=False,
    )
    importlib.invalidate_caches()


def ensure_modules(ctx: Context, modules: dict[str, str]) -> list[str]:
    """Import each module, pip-installing its package first if missing. Returns the modules still missing."""
    missing = [pkg for mod, pkg in modules.items() if not _importable(mod)]
    if missing:
        pip_install(ctx, *missing)
    return [mod for mod in modules if not _importable(mod)]


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


class CpuMeter:
    """User CPU time the rest of the machine used while a benchmark ran (other engineers' tests, say).

    Machine-wide user time (/proc/stat) minus this process's and its reaped children's (servers,
    wrk, curl: all waited for), as a share of the machine's capacity over the interval. System
    time is left out: the kernel's writeback of our own files would otherwise count as "others".
    """

    def __init__(self) -> None:
        self.start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float]:
        try:
            with open("/proc/stat") as fh:
                values = [int(v) for v in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return math.nan, 0.0, time.monotonic()
        user = (values[0] + values[1]) / os.sysconf("SC_CLK_TCK")  # user + nice (guest time is included)
        ours = sum(
            resource.getrusage(who).ru_utime for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        return user, ours, time.monotonic()

    def foreign_share(self) -> float:
        user0, ours0, t0 = self.start
        user1, ours1, t1 = self._snapshot()
        capacity = (t1 - t0) * (os.cpu_count() or 1)
        return max(0.0, ((user1 - user0) - (ours1 - ours0)) / capacity) if capacity > 0 else math.nan


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return math.nan


def cpu_load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def cpu_probe(rounds: int = 5) -> float:
    """Milliseconds for a fixed pure-Python loop (10**6 additions; median of `rounds`).

    This host's CPU speed drifts: the same loop has run up to 1.7x slower from one minute to the
    next, with no steal time reported. Every CPU-bound figure moves with it, so each
    benchmark is bracketed by this probe and the table's readers can see what speed it ran at.
    """
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def json_default(value: Any) -> Any:
    return str(value)
