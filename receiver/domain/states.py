"""The job state machine: status only moves forward; terminal is final.

    pending < in_progress < {completed, failed, cancelled, expired}

A status upstream does not document yet ranks with `pending`: it is recorded, never allowed to
pull a job back.
"""

from __future__ import annotations

from openrouter_video import IN_PROGRESS, PENDING, TERMINAL_STATUSES

from .model import Decision

__all__ = ["Decision", "decide", "rank"]

_RANK = {PENDING: 0, IN_PROGRESS: 1, **{status: 2 for status in TERMINAL_STATUSES}}


def rank(status: str) -> int:
    return _RANK.get(status, 0)


def decide(current: str | None, new: str) -> Decision:
    """What an upstream report of `new` does to a job now at `current` (None: unknown job)."""
    if current is None:
        return "create"
    if new == current:
        return "same"
    if current in TERMINAL_STATUSES:
        return "conflict" if new in TERMINAL_STATUSES else "stale"
    return "advance" if rank(new) > rank(current) else "stale"
