"""Per-job knob names and value parsing, shared by the faults JSON, prompt markers and headers.

One vocabulary everywhere: a knob `name` is a key of the faults JSON, a prompt marker
(`[sim:name=value]`, several pairs allowed: `[sim:outcome=failed, pending=0.1]`) and a request
header (`X-Simulator-Name`, underscores written as dashes: `X-Simulator-In-Progress`).
Values arrive as JSON values or as strings; every parser accepts both and raises `KnobError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .._types import CANCELLED, COMPLETED, EXPIRED, FAILED
from ._mp4 import check_size

OUTCOMES = (COMPLETED, FAILED, CANCELLED, EXPIRED)
WEBHOOK_MODES = ("normal", "drop", "bad_signature", "stale", "future")
HEADER_PREFIX = "x-simulator-"
MARKER_RE = re.compile(r"\[sim:([^\]]*)\]")
_PAIR_SPLIT = re.compile(r"[,;\s]+")


class KnobError(ValueError):
    """A knob name or value is not valid; the message names both."""


Parser = Callable[[Any], Any]


def _choice(options: tuple[str, ...]) -> Parser:
    def parse(value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in options:
            return value.strip().lower()
        raise ValueError(f"must be one of {', '.join(options)}")

    return parse


def _number(kind: type, low: float, high: float) -> Parser:
    def parse(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        try:
            number = kind(value.strip()) if isinstance(value, str) else value
        except ValueError:
            raise ValueError(f"must be {'an integer' if kind is int else 'a number'}") from None
        if kind is int and isinstance(number, float) and number.is_integer():
            number = int(number)
        if not isinstance(number, (int, float)) or (kind is int and not isinstance(number, int)):
            raise ValueError(f"must be {'an integer' if kind is int else 'a number'}")
        if not low <= number <= high:
            raise ValueError(f"must be between {low:g} and {high:g}")
        return kind(number)

    return parse


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _size(value: Any) -> int:
    return check_size(_number(int, 0, float("inf"))(value))


JOB_KNOBS: dict[str, Parser] = {
    "outcome": _choice(OUTCOMES),
    "webhook": _choice(WEBHOOK_MODES),
    "copies": _number(int, 1, 100),
    "delay": _number(float, 0, 86400),
    "outputs": _number(int, 1, 16),
    "bytes": _size,
    "gone": _bool,
    "pending": _number(float, 0, 86400),
    "in_progress": _number(float, 0, 86400),
    "rate": _number(float, 1, 1e13),
}
"""Knobs settable per job; each is also a global default in `Faults`."""


def parse_knob(name: str, value: Any) -> Any:
    """Validate and convert one knob value."""
    parser = JOB_KNOBS.get(name)
    if parser is None:
        raise KnobError(f"unknown simulator knob {name!r}; known: {', '.join(JOB_KNOBS)}")
    try:
        return parser(value)
    except ValueError as exc:
        raise KnobError(f"simulator knob {name}={value!r}: {exc}") from None


def marker_overrides(prompt: str | None) -> dict[str, Any]:
    """Knobs from `[sim:name=value ...]` markers in a prompt."""
    found: dict[str, Any] = {}
    for body in MARKER_RE.findall(prompt or ""):
        for pair in filter(None, _PAIR_SPLIT.split(body)):
            name, sep, value = pair.partition("=")
            if not sep:
                raise KnobError(f"simulator marker part {pair!r} is not name=value")
            found[name.strip().lower()] = parse_knob(name.strip().lower(), value)
    return found


def header_overrides(headers: Mapping[str, str]) -> dict[str, Any]:
    """Knobs from `X-Simulator-<Name>` request headers."""
    found: dict[str, Any] = {}
    for key, value in headers.items():
        if key.lower().startswith(HEADER_PREFIX):
            name = key.lower()[len(HEADER_PREFIX) :].replace("-", "_")
            found[name] = parse_knob(name, value)
    return found


def job_overrides(prompt: str | None, headers: Mapping[str, str]) -> dict[str, Any]:
    """Per-job knobs: prompt markers, then headers (a header wins over a marker)."""
    return {**marker_overrides(prompt), **header_overrides(headers)}
