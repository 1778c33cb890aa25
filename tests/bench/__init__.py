"""Benchmarks: `python -m tests.bench [--only 1,3] [--quick]` (or `make bench`) prints one table.

1. durable webhook intake (wrk, 50 connections) vs a bare Starlette endpoint, store integrity
2. forged-signature flood, with genuine deliveries sent during it
3. signature verification per call: ours vs stripe vs standardwebhooks
4. download of a 2 GB simulated video: client vs curl, peak memory of the client
5. query API on 1,000,000 job records
6. end to end on the simulator: webhook sent -> MP4 fsynced, p50/p99
7. PostgreSQL (fsync on): durable webhook acks/s with one and two replicas vs pgbench's one-row INSERT
8. S3 (SeaweedFS): a 1 GiB video stored through the receiver vs aws s3 cp, peak memory of both
9. the dashboard's jobs page on 1,000,000 job records: first, filtered, deep-cursor and search pages
10. long-polls waking after a webhook, 500 open at once (SQLite; PostgreSQL across two replicas), p50/p99

Every benchmark runs its servers as subprocesses on loopback, is bounded in time and size, and
removes its processes and files. See `__main__.py` for the options.
"""
