"""Listings every backend pages the same way: the state filters and the cursors (opaque to callers).

A cursor is only ever one a listing returned; anything else raises ValueError ("bad cursor"), which
the API answers with 400. Same format on every backend, so a cursor survives a move between replicas.
"""

from __future__ import annotations

import base64
import json
from typing import Any, get_args

from .model import DeliveryState, JobFilter, OutputState

DELIVERY_STATES: tuple[str, ...] = get_args(DeliveryState)  # test: a `webhook test` delivery
# `deleted`: done once, its content removed by retention (RECEIVER_RETENTION_DAYS); the output's
# `updated_at` says when and its `error` why.
DOWNLOAD_STATES: tuple[str, ...] = get_args(OutputState)
UNPROCESSED = "unprocessed"  # a delivery state filter: failed or pending


def check_delivery_state(state: str | None) -> None:
    if state is not None and state != UNPROCESSED and state not in DELIVERY_STATES:
        raise ValueError(f"state must be one of {', '.join((*DELIVERY_STATES, UNPROCESSED))}")


def filter_terms(filters: JobFilter, placeholder: str) -> tuple[list[str], list[Any]]:
    """The WHERE terms (ANDed) of a job listing's filters, written with the backend's parameter
    `placeholder` (`?`, `%s`), and their parameters; an empty filter is none. The same for the API's
    listing and the dashboard's, on every backend."""
    where: list[str] = []
    params: list[Any] = []
    for term, value in (
        ("status = ", filters.status),
        ("model = ", filters.model),
        ("created_at >= ", filters.since),
        ("created_at < ", filters.until),
        ("owner = ", filters.owner),
    ):
        if value is not None and value != "":
            where.append(term + placeholder)
            params.append(value)
    return where, params


def encode_cursor(created_at: float, job_id: str) -> str:
    """The job listing's keyset cursor: (created_at, id) of the last job shown."""
    return base64.urlsafe_b64encode(json.dumps([created_at, job_id]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(created_at, (int, float)) or not isinstance(job_id, str):
            raise ValueError("bad cursor")
        job_id.encode("utf-8")
        return float(created_at), job_id
    except (TypeError, OverflowError, UnicodeEncodeError):  # e.g. a bare number, 10**400, a lone surrogate
        raise ValueError("bad cursor") from None


def encode_delivery_cursor(delivery_id: int) -> str:
    """The delivery listing's cursor: the last id shown."""
    return str(delivery_id)


def decode_delivery_cursor(cursor: str) -> int:
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 19):
        raise ValueError("bad cursor")
    return int(cursor)
