"""A Hypothesis state machine over the store interfaces (receiver.storage.base), on a real store.

Rules drive what the receiver does to its stores: register a job, record webhook deliveries
(random job, random status, duplicates, reordering, the same idempotency key resent, unparseable
bodies), apply the stored deliveries (any number at a time, interleaved with everything else),
apply poll results, claim/finish/retry/end downloads and claim/schedule fallback polls as one of
two workers (two Stores on one store: replicas) under leases (a worker that no longer holds a claim
cannot record its outcome), restart (close, reopen as the store's only process, recover the dead
workers' claims) and close in the middle of writes. After every step the invariants are read back
through the interfaces and compared with a small independent model.

The stores come from `open_test_stores(KIND, ...)`: a subclass setting `kind` runs it on another
backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from unittest import mock

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from receiver_support import open_test_stores

from openrouter_video import TERMINAL_STATUSES, VideoJob
from openrouter_video.receiver.domain.model import Delivery, JobFilter, RecordedDelivery
from openrouter_video.receiver.storage.base import Stores, StoreUnavailable

JOBS = ("jobA", "jobB", "jobC")
# "queued" stands for a status upstream may add one day: recorded, ranked with pending.
STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled", "expired", "queued")
RANK = {"pending": 0, "in_progress": 1, **{s: 2 for s in TERMINAL_STATUSES}}
_OUTPUT_DETAIL = re.compile(r"^output (\d+):")
LEASE = 10.0
DEAD = -1  # the holder of a claim made before a restart: a worker that no longer runs
Output = tuple[str, int]


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
    kind = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        # /dev/shm when there is one: a real SQLite file, without paying for fsync on every commit.
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.dir = tempfile.mkdtemp(prefix="stateful-store-", dir=base)
        self.loop = asyncio.new_event_loop()
        # The machine's clock is the stores' clock too (they read time.time()): steps replay exactly.
        self.clock = 1_700_000_000.0
        self._real_time = mock.patch("time.time", lambda: self.clock)
        self._real_time.start()
        self.generation = 0  # restarts: the processes after a restart are new workers
        self.workers: list[Stores] = []
        self.status: dict[str, str] = {}  # the model: expected status of each known job
        self.seen_status: dict[str, list[str]] = {}  # what the store actually showed, step by step
        self.keys: dict[str, bytes] = {}  # idempotency keys acknowledged (committed), with their body
        # Deliveries stored but not applied yet, oldest first: (key, job, status, outputs, received_at);
        # job is None for a body that is not an event.
        self.pending: list[tuple[str, str | None, str, int, float]] = []
        self.outputs: dict[Output, str] = {}  # expected state of each output
        self.due_at: dict[Output, float] = {}
        self.done: dict[Output, str] = {}  # sha256 of each finished output
        self.downloaded: Counter[Output] = Counter()
        self.claims: dict[Output, tuple[int, float]] = {}  # downloading output: (worker number, lease end)
        self.registered: set[str] = set()
        self.next_poll: dict[str, float | None] = {}
        self.poll_claims: dict[str, tuple[int, float]] = {}  # job: (worker number, lease end)

    # -- plumbing -------------------------------------------------------------------------------

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def _open_workers(self) -> None:
        """Two workers on one store: the first serves it alone at start (a previous run's claims
        are dead), the second joins it (as a replica would)."""
        self.generation += 1
        self.workers = [
            self.run(
                open_test_stores(
                    self.kind, self.dir, worker=f"w{n}-{self.generation}", lease=LEASE, exclusive=n == 0
                )
            )
            for n in (0, 1)
        ]

    def _close_workers(self) -> None:
        for stores in self.workers:
            self.run(stores.close())
        self.workers = []

    def _now(self) -> float:
        self.clock += 0.5
        return self.clock

    def _expect(self, job: str, new: str, outputs: int, at: float) -> None:
        """The documented state machine, written independently of receiver.domain."""
        current = self.status.get(job)
        if current is None:
            self.status[job] = new
            self.next_poll[job] = None  # first seen by upstream's word: not registered, not polled
        elif current not in TERMINAL_STATUSES and RANK.get(new, 0) > RANK.get(current, 0):
            self.status[job] = new
            if new in TERMINAL_STATUSES:
                self.next_poll[job] = None  # a terminal job is never polled again
        if new == "completed" and self.status[job] == "completed":
            for index in range(outputs):
                if (job, index) not in self.outputs:
                    self.outputs[(job, index)] = "pending"
                    self.due_at[(job, index)] = at

    def teardown(self) -> None:
        with contextlib.suppress(Exception):
            self._close_workers()
        self._real_time.stop()
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- rules ----------------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        self._open_workers()
        assert self.run(self.workers[0].downloads.recover()) == 0

    @rule(job=st.sampled_from(JOBS), model=st.none() | st.just("m1"), prompt=st.none() | st.just("p"))
    def register(self, job: str, model: str | None, prompt: str | None) -> None:
        first_poll_at = self._now() + 30
        jobs = self.workers[0].jobs
        created = self.run(jobs.register(job, model=model, prompt=prompt, first_poll_at=first_poll_at))
        assert created == (job not in self.status)
        if job not in self.registered and self.status.get(job, "pending") not in TERMINAL_STATUSES:
            self.next_poll[job] = first_poll_at
        self.status.setdefault(job, "pending")
        self.registered.add(job)

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

    @rule(limit=st.integers(1, 5), worker=st.integers(0, 1))
    def apply(self, limit: int, worker: int) -> None:
        applied = self.run(self.workers[worker].deliveries.apply_pending(limit)).deliveries
        expected, self.pending = self.pending[:limit], self.pending[limit:]
        assert [a.idempotency_key for a in applied] == [key for key, *_ in expected]
        for result, (_key, job, status, outputs, received_at) in zip(applied, expected, strict=True):
            if job is None:
                assert not result.applied and "not JSON" in result.error
                continue
            assert result.applied and result.job_id == job and result.status == status
            self._expect(job, status, outputs, at=received_at)

    @rule(job=st.sampled_from(JOBS), status=st.sampled_from(STATUSES), outputs=st.integers(1, 3))
    def poll_answer(self, job: str, status: str, outputs: int) -> None:
        self.run(self.workers[0].polls.apply_poll(VideoJob.from_api(_job_data(job, status, outputs))))
        self._expect(job, status, outputs, at=self.clock)

    @rule(seconds=st.floats(0, 12))
    def time_passes(self, seconds: float) -> None:
        self.clock += seconds

    @rule(limit=st.integers(1, 4), worker=st.integers(0, 1))
    def claim(self, limit: int, worker: int) -> None:
        now = self._now()
        due = [o for o, state in self.outputs.items() if state == "pending" and self.due_at[o] <= now]
        due += [o for o, (_w, until) in self.claims.items() if until < now]
        claimed = self.run(self.workers[worker].downloads.claim(now, limit))
        assert len(claimed) == min(limit, len(due))
        for claim in claimed:
            output = (claim.job_id, claim.index)
            assert output not in self.done, f"{output} is done but was claimed again"
            assert output in due, f"{output} was claimed in state {self.outputs.get(output)}"
            self.outputs[output] = "downloading"
            self.claims[output] = (worker, now + LEASE)

    def _downloading(self) -> list[Output]:
        return sorted(o for o, state in self.outputs.items() if state == "downloading")

    def _pick(self, data) -> tuple[Output, int, bool]:
        """A downloading output and a worker reporting on it: its holder, or the other (refused). A
        claim of a worker that died (DEAD) is held by neither."""
        output = data.draw(st.sampled_from(self._downloading()))
        holder = self.claims[output][0]
        worker = data.draw(st.sampled_from([0, 1] if holder == DEAD else [holder, 1 - holder]))
        return output, worker, worker == holder

    @precondition(lambda self: self._downloading())
    @rule(data=st.data())
    def renew(self, data) -> None:
        output, worker, holds = self._pick(data)
        held = self.run(self.workers[worker].downloads.renew([output]))
        assert held == (1 if holds else 0)
        if holds:
            self.claims[output] = (worker, self.clock + LEASE)

    @precondition(lambda self: self._downloading())
    @rule(data=st.data())
    def finish(self, data) -> None:
        output, worker, holds = self._pick(data)
        job, index = output
        sha = f"{len(self.done):064x}"
        key = f"{job}/{index}.mp4"
        recorded = self.run(
            self.workers[worker].downloads.finish(job, index, content_key=key, size=1000 + index, sha256=sha)
        )
        assert recorded == holds, f"worker {worker} recorded {output} held by {self.claims[output][0]}"
        if holds:
            self.outputs[output] = "done"
            self.done[output] = sha
            self.downloaded[output] += 1
            del self.claims[output]
            assert self.run(self.workers[1 - worker].downloads.content_key(job, index)) == key

    @precondition(lambda self: self._downloading())
    @rule(data=st.data(), delay=st.integers(0, 3), counted=st.booleans())
    def retry(self, data, delay: int, counted: bool) -> None:
        output, worker, holds = self._pick(data)
        job, index = output
        next_at = self._now() + delay
        attempts = self._attempts(output)
        queue = self.workers[worker].downloads
        recorded = self.run(
            queue.retry(job, index, next_at=next_at, error="503 upstream", count_attempt=counted)
        )
        assert recorded == holds
        if holds:
            self.outputs[output] = "pending"
            self.due_at[output] = next_at
            del self.claims[output]
            assert self._attempts(output) == attempts - (0 if counted else 1)

    def _attempts(self, output: Output) -> int:
        record = self.run(self.workers[0].jobs.get(output[0]))
        return next(o.attempts for o in record.outputs if o.index == output[1])

    @precondition(lambda self: self._downloading())
    @rule(data=st.data(), state=st.sampled_from(["gone", "failed"]))
    def end(self, data, state: str) -> None:
        output, worker, holds = self._pick(data)
        job, index = output
        recorded = self.run(self.workers[worker].downloads.end(job, index, state=state, error="410 gone"))
        assert recorded == holds
        if holds:
            self.outputs[output] = state
            del self.claims[output]

    @rule(limit=st.integers(1, 3), worker=st.integers(0, 1))
    def claim_polls(self, limit: int, worker: int) -> None:
        now = self._now()
        due = {
            job
            for job, at in self.next_poll.items()
            if at is not None and at <= now and self.poll_claims.get(job, (0, -1.0))[1] < now
        }
        claimed = self.run(self.workers[worker].polls.claim(now, limit))
        assert len(claimed) == min(limit, len(due))
        for claim in claimed:
            assert claim.job_id in due, f"{claim.job_id} claimed for a poll: not due, or under a live claim"
            assert self.status[claim.job_id] not in TERMINAL_STATUSES
            self.poll_claims[claim.job_id] = (worker, now + LEASE)

    @precondition(lambda self: self.poll_claims)
    @rule(data=st.data(), delay=st.none() | st.integers(0, 60))
    def schedule_poll(self, data, delay: int | None) -> None:
        job = data.draw(st.sampled_from(sorted(self.poll_claims)))
        holder, until = self.poll_claims[job]
        worker = data.draw(st.sampled_from([holder, 1 - holder]))
        next_at = None if delay is None else self._now() + delay
        self.run(self.workers[worker].polls.schedule(job, next_at))
        # Another worker's outcome is dropped while the holder's claim is live.
        if worker == holder or until < self.clock:
            del self.poll_claims[job]
            self.next_poll[job] = None if self.status[job] in TERMINAL_STATUSES else next_at

    @rule()
    def restart(self) -> None:
        """New processes (new workers), the first serving the store alone: every other claim is dead."""
        self._close_workers()
        self._open_workers()
        now = self._now()
        released = self.run(self.workers[0].downloads.recover())
        assert released == len(self._downloading())
        for output in self.claims:
            self.claims[output] = (DEAD, now - LEASE)
        self.poll_claims.clear()

    @rule(job=st.sampled_from(JOBS), status=st.sampled_from(STATUSES))
    def close_mid_writes(self, job: str, status: str) -> None:
        """The stores closed with writes in flight: each is either kept (and answered) or refused with
        StoreUnavailable, kept nowhere."""
        key = f"{job}-{status}-in-flight"
        body = json.dumps({"type": f"video.generation.{status}", "data": _job_data(job, status, 1)}).encode()
        stores = self.workers[0]

        async def writes_then_close() -> list[object]:
            delivery = self._delivery(key, body)
            started = self.clock
            writes = [
                asyncio.ensure_future(stores.deliveries.record(delivery)),
                asyncio.ensure_future(
                    stores.polls.apply_poll(VideoJob.from_api(_job_data(job, "completed", 2)))
                ),
            ]
            await stores.close()
            results = await asyncio.gather(*writes, return_exceptions=True)
            return [*results, delivery.received_at, started]

        recorded, polled, received_at, started = self.run(writes_then_close())
        for result in (recorded, polled):
            assert not isinstance(result, BaseException) or isinstance(result, StoreUnavailable), result
        if isinstance(recorded, RecordedDelivery) and not recorded.duplicate:
            self.keys[key] = body
            self.pending.append((key, job, status, 1, received_at))
        if not isinstance(polled, BaseException):
            self._expect(job, "completed", 2, at=started)
        self.workers = self.workers[1:]
        self.restart()

    def _delivery(self, key: str, body: bytes) -> Delivery:
        return Delivery(
            idempotency_key=key,
            body=body,
            headers={"content-type": "application/json"},
            received_at=self._now(),
            signed_at=int(self.clock),
        )

    def _deliver(self, key: str, body: bytes) -> tuple[RecordedDelivery, float]:
        delivery = self._delivery(key, body)
        return self.run(self.workers[1].deliveries.record(delivery)), delivery.received_at

    # -- invariants -----------------------------------------------------------------------------

    def _jobs(self):
        records = {job: self.run(self.workers[0].jobs.get(job)) for job in JOBS}
        return {job: record for job, record in records.items() if record is not None}

    @invariant()
    def statuses_follow_the_state_machine(self) -> None:
        records = self._jobs()
        listed = self.run(self.workers[1].jobs.page(JobFilter(), cursor=None, limit=100)).items
        assert set(records) == set(self.status) == {j.id for j in listed}
        for job, record in records.items():
            history = self.seen_status.setdefault(job, [])
            if history:
                previous = history[-1]
                if previous in TERMINAL_STATUSES:
                    assert record.status == previous, f"{job}: terminal {previous} became {record.status}"
                assert RANK.get(record.status, 0) >= RANK.get(previous, 0), (
                    f"{job}: {previous} -> {record.status}"
                )
            history.append(record.status)
            assert record.status == self.status[job]
            assert (record.terminal_at is not None) == (record.status in TERMINAL_STATUSES), job

    @invariant()
    def one_delivery_per_idempotency_key(self) -> None:
        page = self.run(self.workers[0].deliveries.page(state=None, cursor=None, limit=500))
        assert Counter(d.idempotency_key for d in page.items) == Counter(dict.fromkeys(self.keys, 1))

    @invariant()
    def pending_deliveries_wait_in_order_and_nothing_else_does(self) -> None:
        page = self.run(self.workers[1].deliveries.page(state="pending", cursor=None, limit=500))
        assert [d.idempotency_key for d in reversed(page.items)] == [key for key, *_ in self.pending]
        assert self.run(self.workers[0].deliveries.pending_count()) == len(self.pending)

    @invariant()
    def outputs_belong_to_completed_jobs_and_done_is_final(self) -> None:
        seen: dict[Output, str] = {}
        events: Counter[Output] = Counter()
        for job, record in self._jobs().items():
            assert not record.outputs or record.status == "completed", f"{job} has outputs, {record.status}"
            for output in record.outputs:
                seen[(job, output.index)] = output.state
                if (job, output.index) in self.done:
                    assert output.state == "done" and output.sha256 == self.done[(job, output.index)]
                    assert output.content_key == f"{job}/{output.index}.mp4"
            for event in record.events:
                if event.kind == "downloaded":
                    events[(job, int(_OUTPUT_DETAIL.match(event.detail).group(1)))] += 1
        assert seen == self.outputs
        assert events == self.downloaded  # at most one downloaded event per output

    @invariant()
    def the_queue_depth_counts_what_is_left_to_download(self) -> None:
        left = sum(state in ("pending", "downloading") for state in self.outputs.values())
        assert self.run(self.workers[1].downloads.depth()) == left


JobStoreMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestJobStore = JobStoreMachine.TestCase
