"""A throwaway PostgreSQL cluster for the tests, started by the tests themselves (never a shared one).

`initdb` + `pg_ctl` from the machine's PostgreSQL binaries (/usr/lib/postgresql/*/bin), on a free
loopback port with its socket in a temp dir, fsync off (behaviour tests, not durability ones), stopped
with `-m immediate` at the end. initdb refuses root: as root every command runs as the `postgres`
user (`runuser -u postgres --`) in temp dirs chowned to it.

The receiver connects as an ordinary role `receiver` (password auth over TCP, not a superuser, no
CREATEDB) that owns its database: migrations must not need superuser rights. Each test gets a fresh
empty database (`pg_url`), dropped afterwards.

Without the binaries the tests skip with one line of reason; under CI=true they fail instead (.ci/run
installs postgresql).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

IN_CI = bool(os.environ.get("CI"))  # as tests/test_deploy.py reads it
ROLE = "receiver"
PASSWORD = "receiver-test-pw"
_names = itertools.count(1)


def bin_dir() -> str | None:
    """The newest installed PostgreSQL's bin dir (None: not installed)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def require_binaries() -> str:
    found = bin_dir()
    if found is None:
        reason = "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): apt-get install postgresql"
        if IN_CI:
            pytest.fail(reason + " (required under CI)", pytrace=False)
        pytest.skip(reason)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One PostgreSQL cluster in a temp dir: start, stop (and start again), databases per test."""

    def __init__(self, bins: str, *, fsync: bool = False) -> None:
        self.bins = bins
        self.fsync = fsync
        self.as_root = os.geteuid() == 0
        self.root = tempfile.mkdtemp(prefix="pgtest-")
        self.data = os.path.join(self.root, "data")
        self.sockets = os.path.join(self.root, "sock")
        self.log = os.path.join(self.root, "server.log")
        os.mkdir(self.sockets)
        if self.as_root:
            pg = pwd.getpwnam("postgres")
            for path in (self.root, self.sockets):
                os.chown(path, pg.pw_uid, pg.pw_gid)
        self.port = free_port()
        self.running = False
        self.started_in: float | None = None  # seconds initdb + first start took
        atexit.register(self.destroy)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [os.path.join(self.bins, args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=90)

    def init(self) -> None:
        started = time.monotonic()
        self._run(
            "initdb", "-D", self.data, "--auth-local=trust", "--auth-host=scram-sha-256",
            "-U", "postgres", "-E", "UTF8", "--no-sync", "--no-instructions",
        )  # fmt: skip
        self.start()
        self.admin(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
        self.started_in = time.monotonic() - started

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} -c max_connections=200"
        if not self.fsync:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        result = self._run(
            "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "40", "-o", options, "start", check=False
        )
        if result.returncode != 0:
            with contextlib.suppress(OSError), open(self.log) as f:
                tail = f.read()[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {result.stderr.strip()}\n{tail}")
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", check=False)
            self.running = False

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def admin(self, sql: str) -> None:
        """Run one statement as the superuser over the socket (trust), outside a transaction."""
        import psycopg

        with psycopg.connect(
            host=self.sockets, port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def url(self, dbname: str) -> str:
        return f"postgresql://{ROLE}:{PASSWORD}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        name = f"t{os.getpid()}_{next(_names)}"
        self.admin(f"CREATE DATABASE {name} OWNER {ROLE}")
        return name

    def drop_database(self, name: str) -> None:
        if self.running:
            self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def running_cluster(*, fsync: bool = False) -> Iterator[Cluster]:
    cluster = Cluster(require_binaries(), fsync=fsync)
    try:
        cluster.init()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """The session's cluster (skips, or fails under CI, when PostgreSQL is not installed)."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_database(pg_cluster: Cluster) -> Iterator[str]:
    """A fresh empty database owned by `receiver`, dropped after the test; its name."""
    name = pg_cluster.create_database()
    try:
        yield name
    finally:
        pg_cluster.drop_database(name)


@pytest.fixture
def pg_url(pg_cluster: Cluster, pg_database: str) -> str:
    """The URL of a fresh empty database, as the receiver would be given it (RECEIVER_DATABASE_URL)."""
    return pg_cluster.url(pg_database)
