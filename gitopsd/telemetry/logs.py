"""structlog set-up: readable on a terminal, JSON lines everywhere else.

Logs go to stderr so that command output on stdout (diffs, rendered
manifests, JSON) stays machine-readable. Every line written inside a
reconcile pass carries ``app``, ``revision`` and ``stage`` (bound by the
engine with :func:`bind_pass` through structlog's context variables) and the
current span's ``trace_id`` and ``span_id``, so a log line leads to its trace.
The last processor before rendering is the one redaction mechanism
(:mod:`gitopsd.redact`): no secret reaches a log line, exceptions included.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, Literal

import structlog
import structlog.tracebacks
from opentelemetry import trace

from gitopsd.redact import redact_obj

LogFormat = Literal["auto", "console", "json"]


EventDict = MutableMapping[str, Any]


def add_trace_ids(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """``trace_id`` / ``span_id`` (hex, as OpenTelemetry backends show them) of the current span."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict


def redact_event(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Every value of the line through :func:`gitopsd.redact.redact_obj`."""
    for key, value in event_dict.items():
        if isinstance(value, str | list | tuple | dict):
            event_dict[key] = redact_obj(value)
        elif isinstance(value, BaseException):
            event_dict[key] = redact_obj(f"{type(value).__name__}: {value}")
    return event_dict


@contextmanager
def bind_pass(**values: Any) -> Iterator[None]:
    """Bind ``values`` (app, revision, stage...) to every log line of this task for the body."""
    with structlog.contextvars.bound_contextvars(**values):
        yield


def bind(**values: Any) -> None:
    """Bind more values (e.g. the stage as it moves) until the enclosing :func:`bind_pass` ends."""
    structlog.contextvars.bind_contextvars(**values)


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
        add_trace_ids,
    ]
    if fmt == "json":
        # Tracebacks without local variables: locals may hold tokens and manifests.
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        processors += [tracebacks, redact_event, structlog.processors.JSONRenderer()]
    else:
        processors += [
            structlog.processors.format_exc_info,
            redact_event,
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(),
                exception_formatter=structlog.dev.plain_traceback,
            ),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library (OpenTelemetry's exporters, botocore)
    # go through the same renderer and redaction.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                add_trace_ids,
                structlog.processors.format_exc_info,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact_event,
                structlog.processors.JSONRenderer()
                if fmt == "json"
                else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(numeric, logging.WARNING))
