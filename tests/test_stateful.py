"""A Hypothesis state machine over the job store: real SQLite file, the real functions of receiver.records.

Rules drive what the receiver does to its store: register a job, record webhook deliveries
(random job, random status, duplicates, reordering, the same idempotency key resent, unparseable
bodies), apply the stored deliveries (any number at a time, interleaved with everything else),
apply poll results, claim/finish/retry/end downloads as one of two workers under leases (a worker
that no longer holds a claim cannot record its outcome), restart (close, reopen, recover the dead
worker's claims) and crash in the middle of a transaction. After every step the invariants
are read back from the database itself and compared with a small independent model.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from openrouter_video import TERMINAL_STATUSES, VideoJob
from openrouter_video.receiver import records
from openrouter_video.receiver._db import connect, migrate

JOBS = ("jobA", "jobB", "jobC")
# "queued" stands for a status upstream may add one day: recorded, ranked with pending.
STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled", "expired", "queued")
RANK = {"pending": 0, "in_progress": 1, **{s: 2 for s in TERMINAL_STATUSES}}
_OUTPUT_DETAIL = re.compile(r"^output (\d+):")
WORKERS = ("w1", "w2")
LEASE = 10.0


def _job_data(job: str, status: str, outputs: int) -> dict:
    data: dict = {"id": job, "status": status, "model": "google/veo-3.1"}
    if status == "completed":
        data["unsigned_urls"] = [
            f"https://openrouter.ai/api/v1/videos/{job}/content?index={i}" for i in range(outputs)
        ]
        data["usage"] = {"cost": 0.4, "is_byok": False}
    elif status in TERMINAL_STATUSES:
        data["error"] = f"{status} upstream"
    return data


class JobStoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # /dev/shm when there is one: a real SQLite file, without paying for fsync on every commit.
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.dir = tempfile.mkdtemp(prefix="stateful-store-", dir=base)
        self.path = os.path.join(self.dir, "receiver.db")
        self.conn = self._open()
        self.clock = 1_700_000_000.0
        self.status: dict[str, str] = {}  # the model: expected status of each known job
        self.seen_status: dict[str, list[str]] = {}  # what the database actually showed, step by step
        self.keys: dict[str, bytes] = {}  # idempotency keys acknowledged (committed), with their body
        # Deliveries stored but not applied yet, oldest first: (key, job, status, outputs, received_at);
        # job is None for a body that is not an event.
        self.pending: list[tuple[str, str | None, str, int, float]] = []
        self.outputs: dict[tuple[str, int], str] = {}  # expected state of each output
        self.due_at: dict[tuple[str, int], float] = {}
        self.done: dict[tuple[str, int], str] = {}  # sha256 of each finished output
        self.downloaded: Counter[tuple[str, int]] = Counter()
        self.claims: dict[tuple[str, int], tuple[str, float]] = {}  # downloading output: (worker, lease end)
        self.generation = 0  # restarts: the process after a restart is a new worker

    # -- plumbing -------------------------------------------------------------------------------

    def _open(self):
        conn = connect(self.path)
        migrate(conn)
        return conn

    def _tx(self, fn, *args, **kwargs):
        """One write transaction, as the writer thread runs it."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(self.conn, *args, **kwargs)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return result

    def _now(self) -> float:
        self.clock += 0.5
        return self.clock

    def _expect(self, job: str, new: str, outputs: int, at: float | None = None) -> None:
        """The documented state machine, written independently of receiver.states."""
        current = self.status.get(job)
        if current is None or (current not in TERMINAL_STATUSES and RANK.get(new, 0) > RANK.get(current, 0)):
            self.status[job] = new
        if new == "completed" and self.status[job] == "completed":
            for index in range(outputs):
                if (job, index) not in self.outputs:
                    self.outputs[(job, index)] = "pending"
                    self.due_at[(job, index)] = self.clock if at is None else at

    def teardown(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- rules ----------------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        assert records.release_claims_of_others(self.conn, "w1", self._now()) == 0

    @rule(job=st.sampled_from(JOBS), model=st.none() | st.just("m1"), prompt=st.none() | st.just("p"))
    def register(self, job: str, model: str | None, prompt: str | None) -> None:
        now = self._now()
        created = self._tx(
            records.register_job, job, model=model, prompt=prompt, now=now, first_poll_at=now + 30
        )
        assert created == (job not in self.status)
        self.status.setdefault(job, "pending")

    @rule(
        job=st.sampled_from(JOBS),
        status=st.sampled_from(STATUSES),
        outputs=st.integers(1, 3),
        key_suffix=st.sampled_from(["", "", "-redelivered"]),
    )
    def deliver(self, job: str, status: str, outputs: int, key_suffix: str) -> None:
        key = f"{job}-{status}{key_suffix}"
        body = json.dumps(
            {"type": f"video.generation.{status}", "data": _job_data(job, status, outputs)}
        ).encode()
        outcome, received_at = self._deliver(key, body)
        if key in self.keys:
            assert outcome.duplicate
            return
        assert not outcome.duplicate and outcome.delivery_id is not None
        self.keys[key] = body
        self.pending.append((key, job, status, outputs, received_at))

    @precondition(lambda self: self.keys)
    @rule(data=st.data())
    def resend_same_key(self, data) -> None:
        key = data.draw(st.sampled_from(sorted(self.keys)))
        outcome, _ = self._deliver(key, self.keys[key])
        assert outcome.duplicate

    @rule(k=st.integers(0, 3))
    def deliver_unparseable(self, k: int) -> None:
        key = f"garbage-{k}"
        outcome, received_at = self._deliver(key, b"\xff not json")
        assert outcome.duplicate == (key in self.keys)
        if not outcome.duplicate:
            self.keys[key] = b"\xff not json"
            self.pending.append((key, None, "", 0, received_at))

    @rule(limit=st.integers(1, 5))
    def apply(self, limit: int) -> None:
        applied = self._tx(records.apply_pending, limit, self._now())
        expected, self.pending = self.pending[:limit], self.pending[limit:]
        assert [a.idempotency_key for a in applied] == [key for key, *_ in expected]
        for result, (_key, job, status, outputs, received_at) in zip(applied, expected, strict=True):
            if job is None:
                assert not result.applied and "not JSON" in result.error
                continue
            assert result.applied and result.job_id == job and result.status == status
            self._expect(job, status, outputs, at=received_at)

    @rule(job=st.sampled_from(JOBS), status=st.sampled_from(STATUSES), outputs=st.integers(1, 3))
    def poll(self, job: str, status: str, outputs: int) -> None:
        self._tx(
            records.apply_job_update,
            VideoJob.from_api(_job_data(job, status, outputs)),
            source="poll",
            now=self._now(),
        )
        self._expect(job, status, outputs)

    @rule(seconds=st.floats(0, 5))
    def time_passes(self, seconds: float) -> None:
        self.clock += seconds

    @rule(limit=st.integers(1, 4), worker=st.sampled_from(WORKERS))
    def claim(self, limit: int, worker: str) -> None:
        now = self._now()
        due = [o for o, state in self.outputs.items() if state == "pending" and self.due_at[o] <= now]
        due += [o for o, (_w, until) in self.claims.items() if until < now]
        claimed = self._tx(records.claim_downloads, now, limit, worker=worker, lease=LEASE)
        assert len(claimed) == min(limit, len(due))
        for row in claimed:
            output = (row["job_id"], row["idx"])
            assert output not in self.done, f"{output} is done but was claimed again"
            assert output in due, f"{output} was claimed in state {self.outputs.get(output)}"
            self.outputs[output] = "downloading"
            self.claims[output] = (worker, now + LEASE)

    def _downloading(self) -> list[tuple[str, int]]:
        return sorted(o for o, state in self.outputs.items() if state == "downloading")

    def _pick(self, data) -> tuple[tuple[str, int], str, bool]:
        """A downloading output and a worker reporting on it: its holder, or another (refused)."""
        output = data.draw(st.sampled_from(self._downloading()))
        holder = self.claims[output][0]
        worker = data.draw(st.sampled_from([holder, "someone-else"]))
        return output, worker, worker == holder

    @precondition(lambda self: self._downloading())
    @rule(data=st.data())
    def renew(self, data) -> None:
        output, worker, holds = self._pick(data)
        now = self._now()
        held = self._tx(records.renew_claims, [output], worker, now + LEASE)
        assert held == (1 if holds else 0)
        if holds:
            self.claims[output] = (worker, now + LEASE)

    @precondition(lambda self: self._downloading())
    @rule(data=st.data())
    def finish(self, data) -> None:
        output, worker, holds = self._pick(data)
        job, index = output
        sha = f"{len(self.done):064x}"
        recorded = self._tx(
            records.finish_download,
            job,
            index,
            path=f"/videos/{job}/{index}.mp4",
            size=1000 + index,
            sha256=sha,
            now=self._now(),
            worker=worker,
        )
        assert recorded == holds, f"{worker} recorded {output} held by {self.claims[output][0]}"
        if holds:
            self.outputs[output] = "done"
            self.done[output] = sha
            self.downloaded[output] += 1
            del self.claims[output]

    @precondition(lambda self: self._downloading())
    @rule(data=st.data(), delay=st.floats(0, 3), counted=st.booleans())
    def retry(self, data, delay: float, counted: bool) -> None:
        output, worker, holds = self._pick(data)
        job, index = output
        now = self._now()
        attempts = self._attempts(output)
        recorded = self._tx(
            records.retry_download,
            job,
            index,
            next_at=now + delay,
            error="503 upstream",
            now=now,
            worker=worker,
            count_attempt=counted,
        )
        assert recorded == holds
        if holds:
            self.outputs[output] = "pending"
            self.due_at[output] = now + delay
            del self.claims[output]
            assert self._attempts(output) == attempts - (0 if counted else 1)

    def _attempts(self, output: tuple[str, int]) -> int:
        return self.conn.execute(
            "SELECT attempts FROM outputs WHERE job_id = ? AND idx = ?", output
        ).fetchone()[0]

    @precondition(lambda self: self._downloading())
    @rule(data=st.data(), state=st.sampled_from(["gone", "failed"]))
    def end(self, data, state: str) -> None:
        output, worker, holds = self._pick(data)
        job, index = output
        recorded = self._tx(
            records.end_download, job, index, state=state, error="410 gone", now=self._now(), worker=worker
        )
        assert recorded == holds
        if holds:
            self.outputs[output] = state
            del self.claims[output]

    @rule()
    def restart(self) -> None:
        """A new process (a new worker) on the store it serves alone: every other claim is dead."""
        self.conn.close()
        self.conn = self._open()
        now = self._now()
        self.generation += 1
        released = self._tx(records.release_claims_of_others, f"restarted-{self.generation}", now)
        assert released == len(self._downloading())
        for output, (worker, _until) in self.claims.items():
            self.claims[output] = (worker, now - 1)

    @rule(job=st.sampled_from(JOBS), status=st.sampled_from(STATUSES))
    def crash_mid_transaction(self, job: str, status: str) -> None:
        """SIGKILL with a batch written but not committed: nothing of it may survive."""
        key = f"{job}-{status}-lost"
        body = json.dumps({"type": f"video.generation.{status}", "data": _job_data(job, status, 1)}).encode()
        self.conn.execute("BEGIN IMMEDIATE")
        records.record_delivery(self.conn, self._delivery(key, body))
        records.apply_pending(self.conn, 100, self._now())
        records.apply_job_update(
            self.conn, VideoJob.from_api(_job_data(job, "completed", 2)), source="poll", now=self._now()
        )
        self.conn.close()  # never committed
        self.restart()

    def _delivery(self, key: str, body: bytes) -> records.Delivery:
        return records.Delivery(
            idempotency_key=key,
            body=body,
            headers={"content-type": "application/json"},
            received_at=self._now(),
            signed_at=int(self.clock),
        )

    def _deliver(self, key: str, body: bytes) -> tuple[records.RecordedDelivery, float]:
        delivery = self._delivery(key, body)
        return self._tx(records.record_delivery, delivery), delivery.received_at

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def statuses_follow_the_state_machine(self) -> None:
        rows = {
            r["id"]: r
            for r in self.conn.execute("SELECT id, status, terminal_at, next_poll_at FROM jobs").fetchall()
        }
        assert set(rows) == set(self.status)
        for job, row in rows.items():
            history = self.seen_status.setdefault(job, [])
            if history:
                previous = history[-1]
                if previous in TERMINAL_STATUSES:
                    assert row["status"] == previous, f"{job}: terminal {previous} became {row['status']}"
                assert RANK.get(row["status"], 0) >= RANK.get(previous, 0), (
                    f"{job}: {previous} -> {row['status']}"
                )
            history.append(row["status"])
            assert row["status"] == self.status[job]
            terminal = row["status"] in TERMINAL_STATUSES
            assert (row["terminal_at"] is not None) == terminal, job
            if terminal:
                assert row["next_poll_at"] is None, f"terminal {job} is still scheduled for polling"

    @invariant()
    def one_delivery_row_per_idempotency_key(self) -> None:
        rows = self.conn.execute(
            "SELECT idempotency_key, count(*) AS n FROM deliveries GROUP BY 1"
        ).fetchall()
        assert {r["idempotency_key"]: r["n"] for r in rows} == dict.fromkeys(self.keys, 1)

    @invariant()
    def pending_deliveries_wait_in_order_and_nothing_else_does(self) -> None:
        rows = self.conn.execute(
            "SELECT idempotency_key FROM deliveries WHERE state = 'pending' ORDER BY id"
        ).fetchall()
        assert [r[0] for r in rows] == [key for key, *_ in self.pending]

    @invariant()
    def outputs_belong_to_completed_jobs_and_done_is_final(self) -> None:
        orphans = self.conn.execute(
            "SELECT o.job_id FROM outputs o JOIN jobs j ON j.id = o.job_id WHERE j.status != 'completed'"
        ).fetchall()
        assert orphans == []
        rows = self.conn.execute("SELECT job_id, idx, state, sha256 FROM outputs").fetchall()
        assert {(r["job_id"], r["idx"]): r["state"] for r in rows} == self.outputs
        for r in rows:
            if (r["job_id"], r["idx"]) in self.done:
                assert r["state"] == "done" and r["sha256"] == self.done[(r["job_id"], r["idx"])]

    @invariant()
    def at_most_one_downloaded_event_per_output(self) -> None:
        events = Counter()
        for r in self.conn.execute("SELECT job_id, detail FROM job_events WHERE kind = 'downloaded'"):
            events[(r["job_id"], int(_OUTPUT_DETAIL.match(r["detail"]).group(1)))] += 1
        assert all(n == 1 for n in events.values()), events
        assert events == self.downloaded


JobStoreMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestJobStore = JobStoreMachine.TestCase
