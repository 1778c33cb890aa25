"""`openrouter-video store migrate`: a SQLite store copied into PostgreSQL, idempotently, read-only on
the SQLite side (its file's bytes do not change), with the counts it reports."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import psycopg
from click.testing import CliRunner

from openrouter_video._cli import cli
from openrouter_video.receiver import records
from openrouter_video.receiver._db import connect, migrate


def event(job_id: str, status: str, **data: Any) -> bytes:
    return json.dumps(
        {"type": f"video.generation.{status}", "data": {"id": job_id, "status": status, **data}}
    ).encode()


def build_sqlite(path: Path) -> dict[str, int]:
    """A SQLite store as the receiver leaves it: applied deliveries, a pending one, a failed one, a job
    with a finished download (a local path), one downloading (claimed), one registered and polled."""
    conn = connect(str(path))
    migrate(conn)
    now = time.time()

    def record(key: str, body: bytes) -> None:
        d = records.Delivery(
            key, body, {"webhook-id": key}, now, int(now), "127.0.0.1", replay_key=key.encode()
        )
        records.record_delivery(conn, d)

    conn.execute("BEGIN")
    record("a-1", event("job-a", "in_progress"))
    record("a-2", event("job-a", "completed", unsigned_urls=["u0", "u1"]))
    record("b-1", event("job-b", "completed"))
    record("bad", b"not json")
    records.apply_pending(conn, 100, now)
    records.register_job(conn, "job-c", model="m", prompt="p", now=now, first_poll_at=now + 5)
    [first, *_] = records.claim_downloads(conn, now, 3, worker="old-worker", lease=60)
    records.finish_download(
        conn,
        first["job_id"],
        first["idx"],
        path=f"/data/videos/{first['job_id']}/{first['idx']}.mp4",
        size=3,
        sha256="ab",
        now=now,
        worker="old-worker",
    )
    record("c-1", event("job-c", "in_progress"))  # acknowledged, not applied yet
    conn.execute("COMMIT")
    counts = {
        t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        for t in ("deliveries", "jobs", "job_events", "outputs")
    }
    conn.close()
    return counts


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["store", "migrate", *args])
    return result.exit_code, result.output


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def test_store_migrate_copies_everything_once_and_says_what_it_copied(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "receiver.db"
    counts = build_sqlite(db)
    assert counts == {"deliveries": 5, "jobs": 3, "job_events": counts["job_events"], "outputs": 3}
    before = hashlib.sha256(db.read_bytes()).hexdigest()

    code, out = run("--from", f"sqlite://{db}", "--to", pg_url)
    assert code == 0, out
    assert (
        f"copied: 5 deliveries, 3 jobs, {counts['job_events']} job_events, 3 outputs; "
        "already there (skipped): 0 deliveries, 0 jobs, 0 job_events, 0 outputs"
    ) in out
    assert "1 output(s) recorded a local path" in out

    code, again = run("--from", f"sqlite://{db}", "--to", pg_url)
    assert code == 0, again
    assert (
        "copied: 0 deliveries, 0 jobs, 0 job_events, 0 outputs; already there (skipped): "
        f"5 deliveries, 3 jobs, {counts['job_events']} job_events, 3 outputs"
    ) in again
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # read-only: not a byte changed

    assert rows(pg_url, "SELECT count(*) FROM job_events") == [(counts["job_events"],)]
    assert rows(pg_url, "SELECT state, count(*) FROM deliveries GROUP BY state ORDER BY state") == [
        ("applied", 3),
        ("failed", 1),
        ("pending", 1),
    ]
    # the download queue: the finished one keyed, not pathed; the one in flight pending again, unclaimed
    assert rows(
        pg_url, "SELECT job_id, idx, state, content_key, claimed_by FROM outputs ORDER BY job_id, idx"
    ) == [
        ("job-a", 0, "done", "job-a/0.mp4", None),
        ("job-a", 1, "pending", None, None),
        ("job-b", 0, "pending", None, None),
    ]
    [(registered, next_poll)] = rows(pg_url, "SELECT registered, next_poll_at FROM jobs WHERE id = 'job-c'")
    assert registered is True and next_poll is not None
    # an event that came from a delivery still points at it, under its id here
    assert rows(
        pg_url,
        "SELECT d.idempotency_key FROM job_events e JOIN deliveries d ON d.id = e.delivery_id "
        "WHERE e.job_id = 'job-a' ORDER BY e.id",
    ) == [("a-1",), ("a-2",)]


def test_store_migrate_copies_what_is_new_since_the_last_run(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "receiver.db"
    build_sqlite(db)
    assert run("--from", f"sqlite://{db}", "--to", pg_url)[0] == 0
    conn = connect(str(db))
    now = time.time()
    conn.execute("BEGIN")
    records.record_delivery(conn, records.Delivery("d-1", event("job-d", "pending"), {}, now, None))
    records.apply_pending(conn, 10, now)
    conn.execute("COMMIT")
    conn.close()
    code, out = run("--from", f"sqlite://{db}", "--to", pg_url)
    # job-c moved on in SQLite (c-1 applied there): left as copied here, where c-1 waits pending
    assert code == 0 and "copied: 1 deliveries, 1 jobs, 1 job_events, 0 outputs" in out
    assert rows(pg_url, "SELECT count(*) FROM jobs") == [(4,)]
    assert rows(pg_url, "SELECT state FROM deliveries WHERE idempotency_key = 'c-1'") == [("pending",)]


def test_store_migrate_refuses_what_it_cannot_read_in_one_line(tmp_path: Path, pg_url: str) -> None:
    code, out = run("--from", f"sqlite://{tmp_path}/missing.db", "--to", pg_url)
    assert code == 1 and out.strip() == f"error: no SQLite database at {tmp_path}/missing.db"
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    code, out = run("--from", f"sqlite://{other}", "--to", pg_url)
    assert code == 1 and "is not a receiver database" in out
    db = tmp_path / "receiver.db"
    build_sqlite(db)
    code, out = run("--from", f"sqlite://{db}", "--to", "mysql://x")
    assert code == 1 and "must be a postgresql:// URL" in out
    code, out = run("--from", f"sqlite://{db}", "--to", pg_url.replace("receiver-test-pw", "wrong"))
    assert code == 1 and out.startswith("error: cannot connect to the target") and len(out.splitlines()) == 1
