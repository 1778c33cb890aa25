"""How the receiver's records are printed: job listings, one job, deliveries, a reprocess answer.

The input is always a record as the receiver's API returns it (plain dicts, times as ISO 8601 UTC
strings), whether it came over HTTP (`ReceiverClient`) or from the database on the server's own
shell (the receiver's local commands build the same dicts and call these), so both print alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click

from .format import emit_json


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def print_more(next_cursor: str | None, what: str) -> None:
    """After one page: how to get the next (on stderr, so stdout stays the records)."""
    if next_cursor:
        click.echo(f"more {what}: --cursor {next_cursor} (or --all)", err=True)


def jobs_table(jobs: list[dict[str, Any]]) -> str:
    if not jobs:
        return "no jobs"
    lines = [f"{'JOB':<44} {'STATUS':<12} {'MODEL':<28} {'CREATED':<24} SOURCE"]
    lines += [
        f"{job['id']:<44} {job['status']:<12} {_text(job.get('model')):<28} "
        f"{_text(job.get('created_at')):<24} {_text(job.get('source'))}"
        for job in jobs
    ]
    return "\n".join(lines)


def print_jobs(jobs: list[dict[str, Any]], next_cursor: str | None, *, as_json: bool) -> None:
    """A listing of job records: a JSON array, or a table; the next page's cursor on stderr."""
    if as_json:
        emit_json(jobs)
    else:
        click.echo(jobs_table(jobs))
    print_more(next_cursor, "jobs")


def _cost(cost: Any) -> str:
    if not isinstance(cost, (int, float)):
        return _text(cost)
    return "$" + f"{cost:.6f}".rstrip("0").rstrip(".")


def describe_job_record(job: dict[str, Any]) -> str:
    """One job for people: status, model, prompt, times, cost, outputs, then the event timeline."""
    fields = [
        ("job", job.get("id")),
        ("status", job.get("status")),
        ("error", job.get("error")),
        ("model", job.get("model")),
        ("prompt", job.get("prompt")),
        ("created", job.get("created_at")),
        ("submitted", job.get("submitted_at")),
        ("first seen", job.get("first_seen_at")),
        ("updated", job.get("updated_at")),
        ("ended", job.get("terminal_at")),
        ("cost", _cost(job.get("cost"))),
        ("generation", job.get("generation_id")),
        ("source", f"{_text(job.get('source'))}" + (", registered" if job.get("registered") else "")),
    ]
    lines = [f"{name + ':':<12} {_text(value)}" for name, value in fields if name != "error" or value]
    outputs = job.get("outputs") or []
    lines.append(f"outputs:     {len(outputs) or 'none'}")
    for output in outputs:
        size = "-" if output.get("bytes") is None else f"{output['bytes']} bytes"
        line = f"  #{output.get('index')}  {_text(output.get('state')):<11} {size:<16} sha256 {_text(output.get('sha256'))}"
        where = output.get("path") or output.get("url")
        if where:
            line += f"  {where}"
        if output.get("error"):
            line += f"  ({output['error']})"
        lines.append(line)
    events = job.get("events") or []
    lines.append(f"events:      {len(events) or 'none'}")
    for event in events:
        detail = f"  {event['detail']}" if event.get("detail") else ""
        lines.append(
            f"  {_text(event.get('at')):<24} {_text(event.get('source')):<8} {_text(event.get('kind')):<16} "
            f"{_text(event.get('status'))}{detail}"
        )
    return "\n".join(lines)


def print_job(job: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        emit_json(job)
    else:
        click.echo(describe_job_record(job))


def _delivery_state(delivery: dict[str, Any]) -> str:
    state = delivery.get("state")
    if state == "applied":
        return "applied"
    if state == "pending":
        return "pending (not applied yet)"
    if state == "test":
        return "test (from `webhook test`: stored, never a job)"
    return f"UNPROCESSED: {_text(delivery.get('error'))}"


def deliveries_lines(deliveries: Iterable[dict[str, Any]]) -> str:
    lines = [
        f"#{d['id']:<6} {_text(d.get('received_at'))}  {_text(d.get('idempotency_key')):<50} {_delivery_state(d)}"
        for d in deliveries
    ]
    return "\n".join(lines) if lines else "no deliveries"


def print_deliveries(deliveries: list[dict[str, Any]], next_cursor: str | None, *, as_json: bool) -> None:
    if as_json:
        emit_json(deliveries)
    else:
        click.echo(deliveries_lines(deliveries))
    print_more(next_cursor, "deliveries")


def print_reprocessed(result: dict[str, Any], *, as_json: bool) -> None:
    """The answer of a reprocess: `{"reprocessed": [...], "applied": N, "unprocessed": M}`."""
    if as_json:
        emit_json(result)
        return
    reprocessed = result.get("reprocessed") or []
    click.echo(
        f"reprocessed {len(reprocessed)} deliveries: {result.get('applied', 0)} applied, "
        f"{result.get('unprocessed', 0)} still unprocessed"
    )
    for delivery in reprocessed:
        if not delivery.get("applied"):
            click.echo(f"  #{delivery.get('id')}: {_text(delivery.get('error'))}")
