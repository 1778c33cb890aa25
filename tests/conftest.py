"""Shared fixtures. Helpers live in tests/support.py (import them as `from support import ...`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
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
