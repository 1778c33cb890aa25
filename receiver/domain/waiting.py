"""Waiting without polling: the pure rules of the long-poll (GET /jobs/{id}?wait=) and of the job
events stream (GET /events). No I/O here; receiver/watch.py and receiver/api_wait.py use these.

- What counts as a change a waiter wakes for: the job's status, or an output's state (`version`).
- A job that can change no more (`settled`: terminal, no output still to download) is answered at once:
  a long-poll on it would only ever time out.
- The events stream's cursor: the store's change-feed token (`ChangeToken`), made opaque and
  URL-safe, with when it was issued. Only the store that issued a token reads it; a cursor that does
  not decode is a 400, one the store is not at yet (another or a restored store) a `reset`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math

from openrouter_video import TERMINAL_STATUSES

from .model import ChangeToken, JobRecord

MAX_WAIT = 60.0  # seconds one long-poll may ask for (proxies' read timeouts are often 60 s: stay under)
WAIT_RULE = f"wait must be a number of seconds greater than 0 and at most {MAX_WAIT:g}"
UNFINISHED_OUTPUTS = frozenset({"pending", "downloading"})
_CURSOR_VERSION = "c1"


def parse_wait(raw: str) -> float:
    """The seconds a `?wait=` asks for; ValueError (WAIT_RULE) for anything else (0, negative, nan...)."""
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(WAIT_RULE) from None
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_WAIT:
        raise ValueError(WAIT_RULE)
    return seconds


Version = tuple[str, tuple[tuple[int, str], ...]]


def version(record: JobRecord) -> Version:
    """What a waiter compares: the status and every output's state (its other fields follow these)."""
    return record.status, tuple((o.index, o.state) for o in record.outputs)


def settled(record: JobRecord) -> bool:
    """Terminal, with every output downloaded or given up: nothing will change it any more (an
    operator's retry of a failed download aside)."""
    return record.status in TERMINAL_STATUSES and not any(
        o.state in UNFINISHED_OUTPUTS for o in record.outputs
    )


def encode_cursor(token: ChangeToken, issued_at: float) -> str:
    """The token as a resumable event id (opaque to clients; base64url JSON)."""
    fields = [
        token.events,
        token.deliveries,
        [list(pair) for pair in token.unseen_events],
        [list(pair) for pair in token.unseen_deliveries],
        round(issued_at, 3),
    ]
    raw = json.dumps([_CURSOR_VERSION, *fields], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


CURSOR_RULE = "cursor (Last-Event-ID or since) is not one GET /events sent"


def decode_cursor(text: str) -> tuple[ChangeToken, float]:
    """(the token, when it was issued); ValueError (CURSOR_RULE) for anything else."""
    try:
        if len(text) > 64 * 1024:
            raise ValueError
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        version_tag, events, deliveries, unseen_events, unseen_deliveries, issued_at = json.loads(raw)
        if version_tag != _CURSOR_VERSION:
            raise ValueError
        token = ChangeToken(
            _count(events), _count(deliveries), _pairs(unseen_events), _pairs(unseen_deliveries)
        )
        if not isinstance(issued_at, (int, float)) or not math.isfinite(issued_at):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise ValueError(CURSOR_RULE) from None
    return token, float(issued_at)


def _count(value: object) -> int:
    if type(value) is not int or not 0 <= value < 2**63:
        raise ValueError
    return value


def _pairs(value: object) -> tuple[tuple[int, float], ...]:
    if not isinstance(value, list) or len(value) > 10_000:
        raise ValueError
    pairs = []
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], (int, float)):
            raise ValueError
        pairs.append((_count(pair[0]), float(pair[1])))
    return tuple(pairs)
