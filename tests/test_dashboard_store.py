"""The dashboard's store functions (the `dashboard` section of receiver.records) on a real SQLite file:
keyset pages both ways, a bounded search window that says how far it got, the filter total and its
cap, the model list, a job's timeline with its deliveries, an operator's retry, the change feed."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator

import pytest

from openrouter_video.receiver import records
from openrouter_video.receiver._db import connect, migrate

BASE = 1_800_000_000.0


@pytest.fixture
def conn(tmp_path) -> Iterator:
    with contextlib.closing(connect(str(tmp_path / "receiver.db"))) as c:
        migrate(c)
        yield c


def _fill(conn, count: int) -> list[str]:
    """`count` jobs a second apart (job n created at BASE + n), newest last; ids in creation order."""
    ids = []
    for n in range(count):
        job_id = f"gen-vid-{n:05d}"
        ids.append(job_id)
        status = ("completed", "failed", "pending")[n % 3]
        model = ("google/veo-3.1", "openai/sora-2")[n % 2]
        prompt = f"prompt {n}" + (" with a red fox" if n % 10 == 0 else "")
        conn.execute(
            "INSERT INTO jobs (id, model, prompt, status, created_at, first_seen_at, updated_at, source, cost) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'webhook', ?)",
            (
                job_id,
                model,
                prompt,
                status,
                BASE + n,
                BASE + n,
                BASE + n,
                1.0 if status == "completed" else None,
            ),
        )
    return ids


def _ids(page: dict) -> list[str]:
    return [j["id"] for j in page["jobs"]]


def test_pages_go_older_and_back_newer_without_gaps_or_repeats(conn) -> None:
    ids = _fill(conn, 25)
    newest_first = ids[::-1]
    first = records.dashboard_jobs(conn, limit=10)
    assert _ids(first) == newest_first[:10] and first["newer"] is None
    second = records.dashboard_jobs(conn, cursor=first["older"], limit=10)
    assert _ids(second) == newest_first[10:20]
    third = records.dashboard_jobs(conn, cursor=second["older"], limit=10)
    assert _ids(third) == newest_first[20:] and third["older"] is None
    back = records.dashboard_jobs(conn, cursor=third["newer"], newer=True, limit=10)
    assert _ids(back) == newest_first[10:20]
    # Fewer than a page newer than the cursor: the first page, whole.
    top = records.dashboard_jobs(conn, cursor=back["newer"], newer=True, limit=10)
    assert _ids(top) == newest_first[:10] and top["newer"] is None


def test_filters_narrow_and_combine(conn) -> None:
    _fill(conn, 30)
    page = records.dashboard_jobs(conn, status="failed", model="openai/sora-2", limit=100)
    assert page["jobs"] and all(
        j["status"] == "failed" and j["model"] == "openai/sora-2" for j in page["jobs"]
    )
    dated = records.dashboard_jobs(conn, since=BASE + 5, until=BASE + 8, limit=100)
    assert _ids(dated) == ["gen-vid-00007", "gen-vid-00006", "gen-vid-00005"]


def test_search_matches_prompt_text_or_id_prefix_and_escapes_like_wildcards(conn) -> None:
    _fill(conn, 30)
    assert _ids(records.dashboard_jobs(conn, search="RED FOX", limit=100)) == [
        "gen-vid-00020",
        "gen-vid-00010",
        "gen-vid-00000",
    ]
    assert _ids(records.dashboard_jobs(conn, search="gen-vid-0001", limit=100)) == [
        f"gen-vid-000{n}" for n in range(19, 9, -1)
    ]
    assert records.dashboard_jobs(conn, search="%", limit=100)["jobs"] == []
    assert records.dashboard_jobs(conn, search="_", limit=100)["jobs"] == []


def test_a_search_examines_a_bounded_window_and_continues_from_where_it_stopped(conn) -> None:
    _fill(conn, 30)
    page = records.dashboard_jobs(conn, search="red fox", limit=100, window=8)
    # The 8 newest (29..22) hold no match; the page says it searched back to job 22 and goes on from there.
    assert page["jobs"] == [] and page["searched_to"] == BASE + 22
    page = records.dashboard_jobs(conn, search="red fox", cursor=page["older"], limit=100, window=8)
    assert _ids(page) == ["gen-vid-00020"] and page["searched_to"] == BASE + 14
    page = records.dashboard_jobs(conn, search="red fox", cursor=page["older"], limit=100, window=8)
    assert _ids(page) == ["gen-vid-00010"] and page["searched_to"] == BASE + 6
    page = records.dashboard_jobs(conn, search="red fox", cursor=page["older"], limit=100, window=8)
    assert _ids(page) == ["gen-vid-00000"] and page["searched_to"] is None and page["older"] is None


def test_a_bad_cursor_is_a_value_error(conn) -> None:
    with pytest.raises(ValueError):
        records.dashboard_jobs(conn, cursor="not-a-cursor")


def test_the_filter_total_is_exact_under_the_cap_and_refused_over_it(conn) -> None:
    _fill(conn, 30)
    assert records.dashboard_cost_total(conn, status="completed") == (10, 10.0)
    assert records.dashboard_cost_total(conn, search="red fox") == (3, 1.0)  # 0, 10, 20: only 0 is completed
    assert records.dashboard_cost_total(conn, status="pending") == (10, 0.0)
    assert records.dashboard_cost_total(conn, cap=29) is None
    assert records.dashboard_cost_total(conn, cap=30) == (30, 10.0)


def test_models_are_listed_by_skipping_through_the_index(conn) -> None:
    _fill(conn, 6)
    assert records.distinct_models(conn) == ["google/veo-3.1", "openai/sora-2"]
    plan = " ".join(
        r[-1] for r in conn.execute("EXPLAIN QUERY PLAN SELECT min(model) FROM jobs WHERE model > 'a'")
    )
    assert "jobs_model_created" in plan


def _deliver(conn, job_id: str, status: str, key: str) -> None:
    body = json.dumps(
        {"type": f"video.generation.{status}", "data": {"id": job_id, "status": status}}
    ).encode()
    delivery = records.Delivery(key, body, {}, time.time(), int(time.time()))
    records.record_delivery(conn, delivery)


def test_the_timeline_has_each_delivery_before_what_it_did(conn) -> None:
    job_id = "gen-vid-timeline"
    registered = time.time() - 100
    records.register_job(conn, job_id, model="m", prompt="p", now=registered, first_poll_at=registered + 60)
    _deliver(conn, job_id, "completed", "k1")
    _deliver(conn, job_id, "completed", "k2")  # a second key for the same event: applied, changes nothing
    records.apply_pending(conn, 10, time.time())
    kinds = [(e["kind"], e["status"]) for e in records.job_timeline(conn, job_id)]
    assert kinds == [
        ("registered", "pending"),
        ("delivery", "completed"),
        ("status", "completed"),
        ("delivery", "completed"),
    ]
    assert records.job_polling(conn, job_id) == {"poll_attempts": 0, "next_poll_at": None}


def test_retry_output_resets_a_failed_output_and_says_so(conn) -> None:
    job_id = "gen-vid-retry"
    records.register_job(conn, job_id, model="m", prompt="p", now=BASE, first_poll_at=BASE)
    conn.execute(
        "INSERT INTO outputs (job_id, idx, state, attempts, next_attempt_at, error, updated_at) "
        "VALUES (?, 0, 'failed', 12, 0, 'HTTP 500', 0), (?, 1, 'done', 1, 0, NULL, 0)",
        (job_id, job_id),
    )
    assert [o["index"] for o in records.outputs_needing_attention(conn)] == [0]
    assert records.retry_output(conn, job_id, 0, BASE + 5, who="dashboard") == "failed"
    row = conn.execute("SELECT state, attempts, next_attempt_at, error FROM outputs WHERE idx = 0").fetchone()
    assert tuple(row) == ("pending", 0, BASE + 5, None)
    assert records.retry_output(conn, job_id, 1, BASE + 5, who="dashboard") is None  # done: untouched
    assert records.retry_output(conn, job_id, 7, BASE + 5, who="dashboard") is None
    event = records.get_job(conn, job_id)["events"][-1]
    assert event["kind"] == "download_retry" and "was failed: HTTP 500" in event["detail"]


def test_the_change_token_moves_with_every_event_and_delivery(conn) -> None:
    before = records.change_token(conn)
    records.register_job(conn, "gen-vid-a", model="m", prompt="p", now=BASE, first_poll_at=BASE)
    middle = records.change_token(conn)
    assert middle[0] > before[0] and records.jobs_changed_since(conn, before[0]) == ["gen-vid-a"]
    _deliver(conn, "gen-vid-a", "failed", "k")
    assert records.change_token(conn)[1] > middle[1]
    assert records.last_delivery_at(conn) is not None
