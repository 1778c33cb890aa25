"""The store's schema and delivery lifecycle on a real SQLite file: migrations, pending -> applied/failed."""

from __future__ import annotations

import contextlib
import json
import time

import httpx
import pytest
from receiver_support import receiver_settings, running_receiver

from openrouter_video.receiver.domain.model import Delivery
from openrouter_video.receiver.storage.sqlite import deliveries
from openrouter_video.receiver.storage.sqlite._db import MIGRATIONS, connect, migrate
from openrouter_video.receiver.storage.sqlite.deliveries import apply_pending, pending_count, record_delivery
from openrouter_video.receiver.storage.sqlite.jobs import get_job


def _event(job_id: str, status: str) -> bytes:
    data = {"id": job_id, "status": status, "model": "google/veo-3.1"}
    return json.dumps({"type": f"video.generation.{status}", "data": data}).encode()


def _delivery(key: str, body: bytes) -> Delivery:
    return Delivery(
        idempotency_key=key, body=body, headers={}, received_at=time.time(), signed_at=int(time.time())
    )


def _tx(conn, fn, *args, **kwargs):
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args, **kwargs)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def test_migration_2_keeps_every_delivery_and_maps_processed_to_state(tmp_path) -> None:
    path = str(tmp_path / "old.db")
    with contextlib.closing(connect(path)) as conn:
        conn.execute("BEGIN")
        for statement in filter(str.strip, MIGRATIONS[0].split(";")):
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO deliveries (id, idempotency_key, job_id, received_at, headers, body, processed, error) "
            "VALUES (1, 'a', 'job-1', 1.0, '{}', x'7b7d', 1, NULL), (2, 'b', NULL, 2.0, '{}', x'ff', 0, 'not JSON')"
        )
        conn.execute("COMMIT")
        assert migrate(conn) == len(MIGRATIONS)
        rows = conn.execute(
            "SELECT id, idempotency_key, job_id, state, error, body FROM deliveries"
        ).fetchall()
        assert [tuple(r) for r in rows] == [
            (1, "a", "job-1", "applied", None, b"{}"),
            (2, "b", None, "failed", "not JSON", b"\xff"),
        ]
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"deliveries_pending", "deliveries_failed", "deliveries_job"} <= indexes
        with pytest.raises(Exception, match="UNIQUE"):
            conn.execute(
                "INSERT INTO deliveries (idempotency_key, received_at, headers, body) VALUES ('a', 3, '{}', x'')"
            )


def test_storing_is_one_pending_row_and_applying_follows_the_stored_order(tmp_path) -> None:
    path = str(tmp_path / "r.db")
    with contextlib.closing(connect(path)) as conn:
        migrate(conn)
        # Stored out of order (completed first): applied in the stored order, so the late one is stale.
        for key, status in (("k1", "completed"), ("k2", "in_progress"), ("k3", "garbage")):
            body = b"\xff" if status == "garbage" else _event("gen-vid-1-abc", status)
            assert not _tx(conn, record_delivery, _delivery(key, body)).duplicate
        assert _tx(conn, record_delivery, _delivery("k1", b"{}")).duplicate
        assert pending_count(conn) == 3
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0  # nothing applied yet

        first = _tx(conn, apply_pending, 2, time.time())
        assert [(a.idempotency_key, a.decision) for a in first] == [("k1", "create"), ("k2", "stale")]
        assert first[0].outputs_queued == 1
        last = _tx(conn, apply_pending, 10, time.time())
        assert len(last) == 1 and not last[0].applied and "not JSON" in last[0].error
        assert pending_count(conn) == 0
        assert get_job(conn, "gen-vid-1-abc").status == "completed"
        states = dict(conn.execute("SELECT idempotency_key, state FROM deliveries"))
        assert states == {"k1": "applied", "k2": "applied", "k3": "failed"}


def test_a_delivery_the_code_cannot_apply_is_marked_failed_and_the_rest_go_on(tmp_path, monkeypatch) -> None:
    path = str(tmp_path / "r.db")
    real_apply = deliveries.apply_job_update

    def apply_with_a_bug(conn, job, **kwargs):  # fault injection: a bug that only one event triggers
        if job.id == "gen-vid-1-poison":
            raise KeyError("a bug")
        return real_apply(conn, job, **kwargs)

    monkeypatch.setattr(deliveries, "apply_job_update", apply_with_a_bug)
    with contextlib.closing(connect(path)) as conn:
        migrate(conn)
        for key, job in (("a", "gen-vid-1-aaa"), ("p", "gen-vid-1-poison"), ("b", "gen-vid-1-bbb")):
            _tx(conn, record_delivery, _delivery(key, _event(job, "completed")))
        with pytest.raises(KeyError):
            _tx(conn, apply_pending, 10, time.time())
        assert pending_count(conn) == 3  # rolled back as a whole
        applied = _tx(conn, apply_pending, 10, time.time(), isolate=True)
        assert [a.applied for a in applied] == [True, False, True]
        assert "KeyError" in applied[1].error
        assert get_job(conn, "gen-vid-1-poison") is None
        assert conn.execute("SELECT count(*) FROM outputs").fetchone()[0] == 2


def test_deliveries_left_pending_by_a_crash_are_applied_at_start(tmp_path, simulator) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator)
    with contextlib.closing(connect(settings.db_path)) as conn:
        migrate(conn)
        for i in range(300):
            _tx(conn, record_delivery, _delivery(f"k{i}", _event(f"gen-vid-1-j{i:05d}", "failed")))
    with running_receiver(settings) as receiver:
        receiver.applied()
        listing = receiver.get("/jobs", params={"limit": 500}).json()["jobs"]
        assert len(listing) == 300 and {j["status"] for j in listing} == {"failed"}


def test_a_backlog_drains_while_deliveries_keep_arriving(tmp_path, simulator) -> None:
    """Intake has priority only while the loop is saturated: a steady stream must not starve the applier."""
    from receiver_support import signed_event

    settings = receiver_settings(str(tmp_path / "data"), simulator)
    with contextlib.closing(connect(settings.db_path)) as conn:
        migrate(conn)
        conn.execute("BEGIN IMMEDIATE")
        for i in range(3000):
            record_delivery(conn, _delivery(f"old{i}", _event(f"gen-vid-1-old{i:05d}", "failed")))
        conn.execute("COMMIT")
    with running_receiver(settings) as receiver, httpx.Client(timeout=10) as http:
        began = time.monotonic()
        sent = 0
        while time.monotonic() - began < 3.0:  # about 100 deliveries/s for 3 s
            body, headers = signed_event(
                simulator.secret, {"id": f"gen-vid-2-new{sent:05d}", "status": "failed"}, key=f"new{sent}"
            )
            assert http.post(receiver.webhook_url, content=body, headers=headers).status_code == 200
            sent += 1
            time.sleep(0.01)  # pacing the stream is the thing under test
        with contextlib.closing(receiver.db()) as conn:
            assert pending_count(conn) < 50  # drained during the stream, not after it
        receiver.applied(timeout=10)
        with contextlib.closing(receiver.db()) as conn:
            assert (
                conn.execute("SELECT count(*) FROM jobs WHERE status = 'failed'").fetchone()[0] == 3000 + sent
            )


def test_reprocess_applies_what_a_stopped_receiver_left_pending(tmp_path) -> None:
    from click.testing import CliRunner

    from openrouter_video.receiver.cli_local import deliveries as deliveries_command
    from openrouter_video.receiver.cli_local import reprocess

    data_dir = str(tmp_path / "data")
    with contextlib.closing(connect(str(tmp_path / "data" / "receiver.db"))) as conn:
        migrate(conn)
        _tx(conn, record_delivery, _delivery("a", _event("gen-vid-1-aaa", "completed")))
        _tx(conn, record_delivery, _delivery("b", b"not json"))
    runner = CliRunner()
    listing = runner.invoke(deliveries_command, ["--unprocessed", "--data-dir", data_dir])
    assert listing.exit_code == 0 and listing.output.count("pending (not applied yet)") == 2
    result = runner.invoke(reprocess, ["--data-dir", data_dir])
    assert result.exit_code == 0 and "2 deliveries: 1 applied, 1 still unprocessed" in result.output
    with contextlib.closing(connect(str(tmp_path / "data" / "receiver.db"))) as conn:
        assert get_job(conn, "gen-vid-1-aaa").status == "completed"
        assert pending_count(conn) == 0
