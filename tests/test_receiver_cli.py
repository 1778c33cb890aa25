"""The receiver's commands on the server's own shell: reading commands that never write or migrate,
one connection each, ISO 8601 times, and the export of job records (CSV and JSON)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import sqlite3

import httpx
import pytest
from click.testing import CliRunner
from receiver_support import receiver_settings, running_receiver, signed_event

from openrouter_video.receiver.cli_local import jobs
from openrouter_video.receiver.storage.sqlite._db import MIGRATIONS, connect

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def stored(tmp_path, simulator):
    with running_receiver(receiver_settings(str(tmp_path / "data"), simulator)) as receiver:
        for n, status in enumerate(["failed", "in_progress", "failed"]):
            data = {"id": f"jobCli{n}", "status": status, "error": "x"}
            body, headers = signed_event(simulator.secret, data)
            assert httpx.post(receiver.webhook_url, content=body, headers=headers).status_code == 200
        receiver.applied()
        return receiver.settings.data_dir


def _run(*args: str) -> str:
    result = CliRunner().invoke(jobs, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_export_writes_every_job_as_csv_and_json_with_iso_times(stored) -> None:
    rows = list(csv.DictReader(io.StringIO(_run("export", "--data-dir", stored))))
    assert sorted(r["id"] for r in rows) == ["jobCli0", "jobCli1", "jobCli2"]
    assert all(ISO.match(r["created_at"]) for r in rows)
    failed = json.loads(_run("export", "--format", "json", "--status", "failed", "--data-dir", stored))
    assert sorted(j["id"] for j in failed) == ["jobCli0", "jobCli2"]
    assert all(j["registered"] is False and ISO.match(j["updated_at"]) for j in failed)
    assert json.loads(_run("export", "--format", "json", "--since", "2999-01-01", "--data-dir", stored)) == []


def test_listing_and_show_print_iso_times(stored) -> None:
    listed = json.loads(_run("list", "--json", "--data-dir", stored))
    assert listed and all(ISO.match(j["created_at"]) for j in listed)
    shown = json.loads(_run("show", "jobCli1", "--json", "--data-dir", stored))
    assert ISO.match(shown["created_at"]) and all(ISO.match(e["at"]) for e in shown["events"])
    assert ISO.match(_run("list", "--data-dir", stored).splitlines()[1].split()[3])


def test_reading_commands_never_migrate_or_write(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    path = str(data / "receiver.db")
    with contextlib.closing(sqlite3.connect(path)) as conn:  # a store from an older version
        conn.executescript(MIGRATIONS[0] + "PRAGMA user_version = 1;")
    result = CliRunner().invoke(jobs, ["list", "--data-dir", str(data)])
    assert result.exit_code == 2 and "schema version 1" in result.output and "serve" in result.output
    with contextlib.closing(connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1  # untouched
