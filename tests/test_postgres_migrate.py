"""`openrouter-video store migrate`: a SQLite store copied into PostgreSQL, idempotently, read-only on
the SQLite side (its file's bytes do not change), with the counts it reports."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import psycopg
from click.testing import CliRunner
from receiver_support import open_test_stores

from openrouter_video._cli import cli
from openrouter_video.receiver.domain.model import Delivery, SubmissionRecord
from openrouter_video.receiver.domain.tokens import TokenRecord, token_hash
from openrouter_video.receiver.storage.migrate import TABLES
from openrouter_video.receiver.storage.sqlite._db import MIGRATIONS


def event(job_id: str, status: str, **data: Any) -> bytes:
    return json.dumps(
        {"type": f"video.generation.{status}", "data": {"id": job_id, "status": status, **data}}
    ).encode()


def build_sqlite(path: Path) -> dict[str, int]:
    """A SQLite store as the receiver leaves it, made through its interfaces: applied deliveries, a
    pending one, a failed one, a job with a finished download, one downloading (claimed), one
    registered and polled."""

    async def make() -> None:
        s = await open_test_stores("sqlite", path.parent, worker="old-worker")
        try:
            now = time.time()

            async def record(key: str, body: bytes) -> None:
                await s.deliveries.record(
                    Delivery(
                        key, body, {"webhook-id": key}, now, int(now), "127.0.0.1", replay_key=key.encode()
                    )
                )

            await record("a-1", event("job-a", "in_progress"))
            await record("a-2", event("job-a", "completed", unsigned_urls=["u0", "u1"]))
            await record("b-1", event("job-b", "completed"))
            await record("bad", b"not json")
            await s.deliveries.apply_pending(100)
            await s.jobs.register("job-c", model="m", prompt="p", first_poll_at=now + 5, owner="app")
            [first, *_] = await s.downloads.claim(now, 3)
            await s.downloads.finish(
                first.job_id,
                first.index,
                content_key=f"{first.job_id}/{first.index}.mp4",
                size=3,
                sha256="ab",
            )
            submission = SubmissionRecord(
                "sub_0123456789abcdef", "idem-key-1", "fingerprint", "submitting", "m", "p",
                None, None, None, now, now, None, "app",
            )  # fmt: skip
            await s.tokens.create(
                TokenRecord("app", "submit", token_hash("orv_test"), "whsec_x", now, budget_usd_per_day=5.0)
            )
            await s.submissions.begin(submission)  # recorded; its paid call's outcome never stored
            # acknowledged, not applied yet; its callback URL named the submission
            await s.deliveries.record(
                Delivery(
                    "c-1", event("job-c", "in_progress"), {"webhook-id": "c-1"}, now, int(now),
                    "127.0.0.1", replay_key=b"c-1", submission_id=submission.id,
                )
            )  # fmt: skip
        finally:
            await s.close()

    asyncio.run(make())
    return table_counts(path)


def table_counts(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["store", "migrate", *args])
    return result.exit_code, result.output


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def test_store_migrate_copies_everything_once_and_says_what_it_copied(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "receiver.db"
    counts = build_sqlite(db)
    assert counts == {
        "deliveries": 5, "jobs": 3, "job_events": counts["job_events"], "outputs": 3, "submissions": 1,
        "tokens": 1,
        "notifications": 0,
    }  # fmt: skip
    before = hashlib.sha256(db.read_bytes()).hexdigest()

    code, out = run("--from", f"sqlite://{db}", "--to", pg_url)
    assert code == 0, out
    assert (
        f"copied: 5 deliveries, 3 jobs, {counts['job_events']} job_events, 3 outputs, 1 submissions, "
        "1 tokens, 0 notifications; already there (skipped): 0 deliveries, 0 jobs, 0 job_events, "
        "0 outputs, 0 submissions, 0 tokens, 0 notifications"
    ) in out
    assert "local path" not in out  # a current store holds content keys already

    code, again = run("--from", f"sqlite://{db}", "--to", pg_url)
    assert code == 0, again
    assert (
        "copied: 0 deliveries, 0 jobs, 0 job_events, 0 outputs, 0 submissions, 0 tokens, 0 notifications; "
        f"already there (skipped): 5 deliveries, 3 jobs, {counts['job_events']} job_events, 3 outputs, "
        "1 submissions, 1 tokens, 0 notifications"
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
    [(registered, next_poll, owner)] = rows(
        pg_url, "SELECT registered, next_poll_at, owner FROM jobs WHERE id = 'job-c'"
    )
    assert registered is True and next_poll is not None and owner == "app"
    # named tokens: their hashes (a token keeps working after the move), caps and secrets
    assert rows(pg_url, "SELECT name, role, token_hash, budget_usd_per_day, notify_secret FROM tokens") == [
        ("app", "submit", token_hash("orv_test"), 5.0, "whsec_x")
    ]
    # an event that came from a delivery still points at it, under its id here
    assert rows(
        pg_url,
        "SELECT d.idempotency_key FROM job_events e JOIN deliveries d ON d.id = e.delivery_id "
        "WHERE e.job_id = 'job-a' ORDER BY e.id",
    ) == [("a-1",), ("a-2",)]
    # the submission, and the pending delivery that names it (its applier will tie the two)
    assert rows(pg_url, "SELECT id, idempotency_key, state, job_id, owner FROM submissions") == [
        ("sub_0123456789abcdef", "idem-key-1", "submitting", None, "app")
    ]
    assert rows(pg_url, "SELECT submission_id FROM deliveries WHERE idempotency_key = 'c-1'") == [
        ("sub_0123456789abcdef",)
    ]


def test_store_migrate_copies_what_is_new_since_the_last_run(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "receiver.db"
    build_sqlite(db)
    assert run("--from", f"sqlite://{db}", "--to", pg_url)[0] == 0

    async def more() -> None:
        s = await open_test_stores("sqlite", tmp_path)
        try:
            now = time.time()
            await s.deliveries.record(Delivery("d-1", event("job-d", "pending"), {}, now, None))
            await s.deliveries.apply_pending(10)
        finally:
            await s.close()

    asyncio.run(more())
    code, out = run("--from", f"sqlite://{db}", "--to", pg_url)
    # job-c moved on in SQLite (c-1 applied there): left as copied here, where c-1 waits pending
    assert code == 0 and "copied: 1 deliveries, 1 jobs, 1 job_events, 0 outputs" in out
    assert rows(pg_url, "SELECT count(*) FROM jobs") == [(4,)]
    assert rows(pg_url, "SELECT state FROM deliveries WHERE idempotency_key = 'c-1'") == [("pending",)]


def test_store_migrate_copies_notify_urls_and_the_notifications_outbox(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "receiver.db"
    build_sqlite(db)

    async def notified() -> str:
        s = await open_test_stores("sqlite", tmp_path)
        try:
            now = time.time()
            url = "https://app.example/hook"
            await s.jobs.register("job-d", model="m", prompt="p", first_poll_at=now + 5, notify_url=url)
            await s.deliveries.record(Delivery("d-1", event("job-d", "failed"), {}, now, None))
            await s.deliveries.apply_pending(10)
            [notification] = (
                await s.notifications.page(state=None, job_id="job-d", cursor=None, limit=5)
            ).items
            return notification.id
        finally:
            await s.close()

    notification_id = asyncio.run(notified())
    code, out = run("--from", f"sqlite://{db}", "--to", pg_url)
    assert code == 0 and "1 submissions, 1 tokens, 1 notifications;" in out, out
    assert rows(pg_url, "SELECT notify_url FROM jobs WHERE id = 'job-d'") == [("https://app.example/hook",)]
    assert rows(pg_url, "SELECT id, job_id, event, state, attempts FROM notifications") == [
        (notification_id, "job-d", "video.failed", "pending", 0)
    ]
    code, again = run("--from", f"sqlite://{db}", "--to", pg_url)
    assert code == 0 and "0 notifications; already there" in again and again.endswith("1 notifications\n")


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


def test_store_migrate_reads_an_older_sqlite_schema_without_migrating_it(tmp_path: Path, pg_url: str) -> None:
    """Schema 4 (before content keys): `outputs.path` held the local file; a path the local store wrote
    becomes its content key, any other path none (as SQLite's migration 5 decides). The file stays at 4."""
    db = tmp_path / "receiver.db"
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        for number, script in enumerate(MIGRATIONS[:4], start=1):
            conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
        conn.execute(
            "INSERT INTO deliveries (idempotency_key, job_id, received_at, headers, body, state, replay_key) "
            "VALUES ('k1', 'jobOld', 1.0, '{}', x'7b7d', 'applied', x'0102')"
        )
        conn.execute(
            "INSERT INTO jobs (id, status, created_at, first_seen_at, updated_at, source, registered) "
            "VALUES ('jobOld', 'completed', 1, 1, 1, 'webhook', 0)"
        )
        conn.execute(
            "INSERT INTO job_events (job_id, at, source, kind, status, delivery_id) "
            "VALUES ('jobOld', 1, 'webhook', 'status', 'completed', 1)"
        )
        conn.execute(
            "INSERT INTO outputs (job_id, idx, state, next_attempt_at, updated_at, path, claimed_by, lease_until) VALUES "
            "('jobOld', 0, 'done', 1, 1, '/srv/data/videos/jobOld/0.mp4', NULL, NULL), "
            "('jobOld', 1, 'done', 1, 1, '/somewhere/else.mp4', NULL, NULL), "
            "('jobOld', 2, 'downloading', 1, 1, NULL, 'w1', 99)"
        )
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    code, out = run("--from", f"sqlite://{db}", "--to", pg_url)
    assert code == 0, out
    assert "copied: 1 deliveries, 1 jobs, 1 job_events, 3 outputs" in out
    assert "1 output(s) recorded a local path: now the content key" in out
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (4,)
    assert rows(pg_url, "SELECT idx, state, content_key, claimed_by FROM outputs ORDER BY idx") == [
        (0, "done", "jobOld/0.mp4", None),
        (1, "done", None, None),
        (2, "pending", None, None),  # in flight under the old receiver: pending again
    ]
    assert rows(pg_url, "SELECT replay_key FROM deliveries") == [(b"\x01\x02",)]


def test_store_migrate_reads_sqlalchemy_style_urls_and_odd_directory_names(
    tmp_path: Path, pg_url: str
) -> None:
    """`sqlite:////abs/path` (SQLAlchemy's absolute form) and a directory named with URI characters
    ('?', '#', '%') name the same file as the plain path would."""
    odd = tmp_path / "a?b#c%20d"
    odd.mkdir()
    db = odd / "receiver.db"
    build_sqlite(db)
    code, out = run("--from", f"sqlite:///{db}", "--to", pg_url)  # four slashes: db is absolute
    assert code == 0, out
    assert "copied: 5 deliveries, 3 jobs" in out
    assert rows(pg_url, "SELECT count(*) FROM jobs") == [(3,)]
