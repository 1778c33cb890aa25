"""structlog, configured once at the process entry (`serve`; `create_app` when nothing did, as
under `uvicorn --factory`): readable console on a terminal, JSON lines otherwise. Every module
gets its logger with `structlog.get_logger(name)`.

Request and job ids are bound through contextvars (`structlog.contextvars`), so every line
logged while handling a delivery or a download carries them.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(fmt: str = "auto", level: str = "info", *, stream=None) -> None:
    out = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and hasattr(out, "isatty") and out.isatty())
    renderer = structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
