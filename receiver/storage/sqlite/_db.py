"""Opening the SQLite database and migrating it (each migration in its own transaction)."""

from __future__ import annotations

import os
import sqlite3

from ..._datadir import StartupError

MIGRATIONS: tuple[str, ...] = (
    # 1: deliveries, jobs, their events, and the fetch queue.
    """
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        job_id TEXT,
        event_type TEXT,
        status TEXT,
        received_at REAL NOT NULL,
        signed_at INTEGER,
        remote_addr TEXT,
        headers TEXT NOT NULL,
        body BLOB NOT NULL,
        processed INTEGER NOT NULL DEFAULT 0,
        error TEXT
    );
    CREATE INDEX deliveries_unprocessed ON deliveries(processed, id);
    CREATE INDEX deliveries_job ON deliveries(job_id);
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        model TEXT,
        prompt TEXT,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        submitted_at REAL,
        first_seen_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        terminal_at REAL,
        source TEXT NOT NULL,
        registered INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        cost REAL,
        generation_id TEXT,
        next_poll_at REAL,
        poll_attempts INTEGER NOT NULL DEFAULT 0,
        upstream TEXT
    );
    CREATE INDEX jobs_created ON jobs(created_at DESC, id DESC);
    CREATE INDEX jobs_status_created ON jobs(status, created_at DESC, id DESC);
    CREATE INDEX jobs_model_created ON jobs(model, created_at DESC, id DESC);
    CREATE INDEX jobs_poll_due ON jobs(next_poll_at) WHERE next_poll_at IS NOT NULL;
    CREATE TABLE job_events (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL,
        at REAL NOT NULL,
        source TEXT NOT NULL,
        kind TEXT NOT NULL,
        status TEXT,
        detail TEXT,
        delivery_id INTEGER
    );
    CREATE INDEX job_events_job ON job_events(job_id, id);
    CREATE TABLE outputs (
        job_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        bytes INTEGER,
        sha256 TEXT,
        path TEXT,
        error TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (job_id, idx)
    );
    CREATE INDEX outputs_due ON outputs(state, next_attempt_at);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
    """,
    # 2: a delivery is stored first (state 'pending', all the webhook answer waits for) and applied
    # to its job afterwards ('applied', or 'failed' with the reason). Partial indexes: storing a
    # delivery touches the pending one only, and the failed ones are few.
    """
    CREATE TABLE deliveries_v2 (
        id INTEGER PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        job_id TEXT,
        event_type TEXT,
        status TEXT,
        received_at REAL NOT NULL,
        signed_at INTEGER,
        remote_addr TEXT,
        headers TEXT NOT NULL,
        body BLOB NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'applied', 'failed')),
        error TEXT,
        applied_at REAL
    );
    INSERT INTO deliveries_v2 (id, idempotency_key, job_id, event_type, status, received_at, signed_at,
        remote_addr, headers, body, state, error, applied_at)
        SELECT id, idempotency_key, job_id, event_type, status, received_at, signed_at, remote_addr, headers,
            body, CASE WHEN processed THEN 'applied' ELSE 'failed' END, error, received_at
        FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_v2 RENAME TO deliveries;
    CREATE INDEX deliveries_pending ON deliveries(id) WHERE state = 'pending';
    CREATE INDEX deliveries_failed ON deliveries(id) WHERE state = 'failed';
    CREATE INDEX deliveries_job ON deliveries(job_id);
    """,
    # 3: a delivery's replay key (its signed timestamp and body hash: a captured delivery resent under
    # a fresh idempotency key is a duplicate), and downloads claimed by one worker under a lease.
    """
    ALTER TABLE deliveries ADD COLUMN replay_key TEXT;
    CREATE UNIQUE INDEX deliveries_replay ON deliveries(replay_key) WHERE replay_key IS NOT NULL;
    ALTER TABLE outputs ADD COLUMN claimed_by TEXT;
    ALTER TABLE outputs ADD COLUMN lease_until REAL;
    CREATE INDEX outputs_leased ON outputs(lease_until) WHERE state = 'downloading';
    """,
    # 4: a delivery of `openrouter-video webhook test` is kept as state 'test' (verified, stored,
    # answered, never applied: it creates no job). SQLite cannot change a CHECK in place: rebuilt.
    """
    CREATE TABLE deliveries_v4 (
        id INTEGER PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        job_id TEXT,
        event_type TEXT,
        status TEXT,
        received_at REAL NOT NULL,
        signed_at INTEGER,
        remote_addr TEXT,
        headers TEXT NOT NULL,
        body BLOB NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'applied', 'failed', 'test')),
        error TEXT,
        applied_at REAL,
        replay_key TEXT
    );
    INSERT INTO deliveries_v4 (id, idempotency_key, job_id, event_type, status, received_at, signed_at,
        remote_addr, headers, body, state, error, applied_at, replay_key)
        SELECT id, idempotency_key, job_id, event_type, status, received_at, signed_at, remote_addr, headers,
            body, state, error, applied_at, replay_key
        FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_v4 RENAME TO deliveries;
    CREATE INDEX deliveries_pending ON deliveries(id) WHERE state = 'pending';
    CREATE INDEX deliveries_failed ON deliveries(id) WHERE state = 'failed';
    CREATE INDEX deliveries_job ON deliveries(job_id);
    CREATE UNIQUE INDEX deliveries_replay ON deliveries(replay_key) WHERE replay_key IS NOT NULL;
    """,
    # 5: records hold a content key (`<job_id>/<index>.mp4`, the content store's), never a local path:
    # a path the local store wrote (ending in its key) becomes that key. And fallback polls are claimed
    # by a worker under a lease, as downloads are, so two workers never poll one job at once.
    """
    ALTER TABLE outputs ADD COLUMN content_key TEXT;
    UPDATE outputs SET content_key = job_id || '/' || idx || '.mp4'
        WHERE path IS NOT NULL
        AND substr(path, -(length(job_id) + length(idx) + 6)) = '/' || job_id || '/' || idx || '.mp4';
    ALTER TABLE outputs DROP COLUMN path;
    ALTER TABLE jobs ADD COLUMN poll_claimed_by TEXT;
    ALTER TABLE jobs ADD COLUMN poll_lease_until REAL;
    """,
    # 6: submits made through the receiver (POST /jobs with an Idempotency-Key), each recorded before
    # the paid call upstream; and the submission a webhook names in its callback URL, kept with the
    # delivery so the applier can tie an undecided submission to its job.
    """
    CREATE TABLE submissions (
        id TEXT PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        fingerprint TEXT NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('submitting', 'submitted', 'outcome_unknown', 'refused')),
        model TEXT NOT NULL,
        prompt TEXT,
        job_id TEXT,
        upstream_status INTEGER,
        error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX submissions_submitting ON submissions(created_at) WHERE state = 'submitting';
    CREATE INDEX submissions_job ON submissions(job_id) WHERE job_id IS NOT NULL;
    ALTER TABLE deliveries ADD COLUMN submission_id TEXT;
    """,
    # 7: a submission's estimated cost (what a spending cap counts until the job's real cost is
    # known), and submissions by time: the spend of a day or month is read at every capped submit.
    """
    ALTER TABLE submissions ADD COLUMN estimated_cost REAL;
    CREATE INDEX submissions_created ON submissions(created_at);
    """,
    # 8: named API tokens for apps (only a hash of each; its notification secret in clear, as it
    # signs), and who owns each job and submission (a token's name; NULL: the built-in admin's, or a
    # job known by webhook only). Idempotency keys become unique per owner: SQLite cannot drop the
    # column's UNIQUE in place, so submissions is rebuilt; COALESCE makes the admin's NULL one owner.
    """
    CREATE TABLE tokens (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('read', 'submit', 'admin')),
        token_hash TEXT NOT NULL UNIQUE,
        notify_secret TEXT NOT NULL,
        budget_usd_per_day REAL,
        budget_usd_per_month REAL,
        created_at REAL NOT NULL,
        revoked_at REAL,
        last_used_at REAL
    );
    ALTER TABLE jobs ADD COLUMN owner TEXT;
    CREATE INDEX jobs_owner_created ON jobs(owner, created_at DESC, id DESC) WHERE owner IS NOT NULL;
    CREATE TABLE submissions_v8 (
        id TEXT PRIMARY KEY,
        idempotency_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('submitting', 'submitted', 'outcome_unknown', 'refused')),
        model TEXT NOT NULL,
        prompt TEXT,
        job_id TEXT,
        upstream_status INTEGER,
        error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        estimated_cost REAL,
        owner TEXT
    );
    INSERT INTO submissions_v8 (id, idempotency_key, fingerprint, state, model, prompt, job_id,
        upstream_status, error, created_at, updated_at, estimated_cost)
        SELECT id, idempotency_key, fingerprint, state, model, prompt, job_id, upstream_status, error,
            created_at, updated_at, estimated_cost
        FROM submissions;
    DROP TABLE submissions;
    ALTER TABLE submissions_v8 RENAME TO submissions;
    CREATE UNIQUE INDEX submissions_owner_key ON submissions(coalesce(owner, ''), idempotency_key);
    CREATE INDEX submissions_submitting ON submissions(created_at) WHERE state = 'submitting';
    CREATE INDEX submissions_job ON submissions(job_id) WHERE job_id IS NOT NULL;
    CREATE INDEX submissions_created ON submissions(created_at);
    """,
    # 9: signed notifications to apps (the outbox): where a job says to notify (kept with its
    # submission too, which hands it to the job), and one row per job end, written in the transaction
    # that ends the job (or stores its last output); `id` is the Standard Webhooks `webhook-id`.
    """
    ALTER TABLE jobs ADD COLUMN notify_url TEXT;
    ALTER TABLE submissions ADD COLUMN notify_url TEXT;
    CREATE TABLE notifications (
        id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        event TEXT NOT NULL,
        url TEXT NOT NULL,
        owner TEXT,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_status INTEGER,
        last_error TEXT,
        claimed_by TEXT,
        lease_until REAL,
        created_at REAL NOT NULL,
        delivered_at REAL,
        UNIQUE (job_id, event)
    );
    CREATE INDEX notifications_due ON notifications(next_attempt_at) WHERE state = 'pending';
    CREATE INDEX notifications_created ON notifications(created_at DESC, id DESC);
    CREATE INDEX notifications_state ON notifications(state, created_at DESC, id DESC);
    """,
)


def connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection in WAL mode with full durability: a commit is on disk before it returns."""
    if not readonly:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    if readonly:
        conn.execute("PRAGMA query_only = ON")  # a reading command can never write by mistake
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending migrations, each atomically (its script, version bump and COMMIT in one
    transaction, run by SQLite as written, not split on ';'); return the schema version."""
    version = schema_version(conn)
    for number, script in enumerate(MIGRATIONS, start=1):
        if number <= version:
            continue
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        version = number
    return version


def check_integrity(conn: sqlite3.Connection, path: str) -> None:
    """Refuse a damaged database before serving it (`PRAGMA quick_check`: every page and index entry
    readable, in linear time); raise StartupError naming the first problem."""
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)").fetchall()]
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    if problems != ["ok"]:
        raise StartupError(
            f"the database {path} is damaged ({'; '.join(problems)[:300]}); "
            "move it aside and restore a backup"
        )
