"""The Hypothesis state machine of tests/test_stateful.py, on the PostgreSQL store.

Same rules, same independent model, same invariants, read back through the interfaces; each example
on a fresh database of the session's cluster, two workers (two store instances: replicas) on it.
One difference is the backend's documented one: with replicas nobody can tell a dead worker's
claim from a live one, so `recover()` frees nothing and a restart's dead claims are free only once
their leases ran out (the restart here lets the lease time pass).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from pg_server import Cluster
from test_stateful import DEAD, LEASE, JobStoreMachine

from openrouter_video.receiver.storage.postgres import open_postgres

_cluster: Cluster | None = None


@pytest.fixture(autouse=True, scope="module")
def _the_cluster(pg_cluster: Cluster) -> Iterator[None]:
    global _cluster
    _cluster = pg_cluster
    yield
    _cluster = None


class PostgresStoreMachine(JobStoreMachine):
    kind = "postgres"

    def __init__(self) -> None:
        assert _cluster is not None, "the module's cluster fixture did not run"
        self.cluster = _cluster
        self.database = _cluster.create_database()
        super().__init__()

    def _open_workers(self) -> None:
        self.generation += 1
        url = self.cluster.url(self.database)
        self.workers = [
            self.run(
                open_postgres(
                    url, worker=f"w{n}-{self.generation}", lease=LEASE, poll_lease=LEASE, listen=False
                )
            )
            for n in (0, 1)
        ]  # type: ignore[misc]  # PostgresStores: the Stores interfaces without a content store

    def restart(self) -> None:
        """New processes (new workers); the old ones' claims are free once their leases ran out."""
        self._close_workers()
        self._open_workers()
        self.clock += LEASE + 1  # the dead workers' leases run out
        assert self.run(self.workers[0].downloads.recover()) == 0
        for output, (_worker, until) in self.claims.items():
            self.claims[output] = (DEAD, until)
        self.poll_claims.clear()  # ran out too: due again, claimable by anyone

    def teardown(self) -> None:
        super().teardown()
        self.cluster.drop_database(self.database)


PostgresStoreMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestPostgresStore = PostgresStoreMachine.TestCase
