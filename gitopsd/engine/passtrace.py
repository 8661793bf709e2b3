"""The trace, logs context and metrics of one reconcile pass of one app.

A pass is one trace: a root span ``reconcile`` (attributes: app, mode,
revision, result) with one child span per stage as the pass moves through
them (``source``, ``render``, ``plan``, ``apply``, ``verify``, ``notify``);
Git fetches, AWS calls and rollouts made during a stage are its children.
While the pass runs, every log line of its task carries ``app``, ``revision``
and ``stage`` (structlog context variables) and the current span's ids.
The pass's duration and result go to the ``gitopsd.reconcile.duration``
histogram, and a sync's result to ``gitopsd.syncs``.

The stages are entered in a straight line (:meth:`PassTrace.enter`), so the
span of the previous stage is ended when the next one begins, and the
failing stage's span carries the error.
"""

from __future__ import annotations

import time
from types import TracebackType

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from gitopsd.model import Revision
from gitopsd.telemetry import instruments as ins

from .journal import AppJournal
from .outcome import Outcome, Stage


class PassTrace:
    """Use as a context manager around a pass; :meth:`enter` each stage."""

    def __init__(self, app: str, mode: str, journal: AppJournal) -> None:
        self.app = app
        self.mode = mode
        self.journal = journal
        self.started = 0.0
        self._root: Span | None = None
        self._root_token: object | None = None
        self._stage: Span | None = None
        self.current: Stage | None = None
        self._stage_token: object | None = None

    def __enter__(self) -> PassTrace:
        self.started = time.monotonic()
        # A fresh context: every pass is a trace of its own, not a child of the agent's task.
        self._root = ins.tracer.start_span(
            "reconcile",
            context=otel_context.Context(),
            attributes={ins.APP: self.app, ins.MODE: self.mode},
        )
        self._root_token = otel_context.attach(trace.set_span_in_context(self._root))
        structlog.contextvars.bind_contextvars(app=self.app)
        return self

    def enter(self, stage: Stage) -> Stage:
        """End the current stage's span and start ``stage``'s; return ``stage``."""
        self._end_stage()
        self.journal.stage = self.current = stage
        self._stage = ins.tracer.start_span(str(stage), attributes={ins.STAGE: str(stage)})
        self._stage_token = otel_context.attach(trace.set_span_in_context(self._stage))
        structlog.contextvars.bind_contextvars(stage=str(stage))
        return stage

    def revision(self, revision: Revision) -> None:
        if self._root is not None:
            self._root.set_attributes(
                {
                    ins.REVISION: revision.commit,
                    ins.REF: revision.ref,
                    ins.SOURCE: revision.source,
                }
            )
        structlog.contextvars.bind_contextvars(revision=revision.commit)

    def failed(self, stage: Stage, message: str, exc: BaseException | None = None) -> None:
        """Mark the failing stage's span (the current one, or a new one for ``stage``)."""
        if self._stage is None or self.current is not stage:
            self.enter(stage)
        assert self._stage is not None
        if exc is not None:
            self._stage.record_exception(exc, attributes={"exception.message": message})
        self._stage.set_status(Status(StatusCode.ERROR, message))

    def _end_stage(self) -> None:
        if self._stage is not None:
            self._stage.end()
            self._stage = None
        if self._stage_token is not None:
            otel_context.detach(self._stage_token)  # type: ignore[arg-type]
            self._stage_token = None

    def finish(self, outcome: Outcome) -> None:
        """Record the pass's result on the root span and in the metrics."""
        duration = time.monotonic() - self.started
        result = outcome.reason
        labels = {ins.APP: self.app, ins.MODE: self.mode, ins.RESULT: result}
        ins.reconcile_duration.record(duration, labels)
        if self.mode == "sync":
            ins.syncs.add(1, {ins.APP: self.app, ins.RESULT: result})
        if self._root is not None:
            self._root.set_attribute(ins.RESULT, result)
            if not outcome.ok:
                self._root.set_status(Status(StatusCode.ERROR, outcome.message or result))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end_stage()
        if self._root is not None:
            if exc is not None:
                self._root.set_attribute(ins.RESULT, "Interrupted")
            self._root.end()
            self._root = None
        if self._root_token is not None:
            otel_context.detach(self._root_token)  # type: ignore[arg-type]
            self._root_token = None
        structlog.contextvars.unbind_contextvars("app", "revision", "stage")

    @property
    def trace_id(self) -> str:
        if self._root is None:
            return ""
        return format(self._root.get_span_context().trace_id, "032x")
