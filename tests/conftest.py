"""Shared fixtures. Helpers live in tests/support.py (import them as `from support import ...`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from backends import BACKENDS, Backend
from pg_server import pg_cluster, pg_database, pg_url  # noqa: F401  (the PostgreSQL fixtures)
from s3_server import s3_env, s3_server  # noqa: F401 - fixtures: a session SeaweedFS, a fresh bucket per test
from support import RunningSimulator, running_simulator


# --- simulator -------------------------------------------------------------------------------
# A fresh OpenRouter video API simulator per test, over real HTTP on a loopback port. Fast
# timings (pending 0.1 s, in_progress 0.1 s), api key `sim.api_key`, webhook secret `sim.secret`.
# Change `sim.config` / `sim.config.faults` freely: they are read live on every request.
@pytest.fixture
def simulator() -> Iterator[RunningSimulator]:
    with running_simulator() as sim:
        yield sim


# --- storage backend ---------------------------------------------------------------------------
# The behavioural suites take `backend` to run once per backend (tests/backends.py): "sqlite" (the
# data dir's file and videos folder) and "postgres+s3" (a fresh database and a fresh bucket of the
# session's servers; skipped without them locally, a failure under CI=true).
@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite")
    database_url = request.getfixturevalue("pg_url")
    s3 = request.getfixturevalue("s3_server")
    bucket_env = request.getfixturevalue("s3_env")
    for name, value in bucket_env.items():
        if name.startswith("AWS_"):  # where open_s3 reads them, in this process and in a child
            monkeypatch.setenv(name, value)
    return Backend(request.param, database_url=database_url, s3=s3, s3_env=bucket_env)
