"""structlog set-up: readable on a terminal, JSON lines everywhere else.

Logs go to stderr so that command output on stdout (diffs, rendered
manifests, JSON) stays machine-readable.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog
import structlog.tracebacks

LogFormat = Literal["auto", "console", "json"]


def configure_logging(level: str = "info", fmt: LogFormat = "auto") -> None:
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r} (debug, info, warning, error)")
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        # Tracebacks without local variables: locals may hold tokens and manifests.
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        processors += [tracebacks, structlog.processors.JSONRenderer()]
    else:
        processors += [
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(),
                exception_formatter=structlog.dev.plain_traceback,
            )
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
