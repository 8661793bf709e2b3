"""Every metric and the tracer gitopsd records with, in one place, through the OpenTelemetry API.

Modules record through these objects and never configure anything: the
SDK (exporters, the Prometheus reader behind ``/metrics``, sampling) is set up
once by the composition root (:mod:`gitopsd.telemetry.setup`). Until then the
API's proxies record nothing and cost next to nothing, so a library use or a
test without telemetry pays no price.

Names follow the OpenTelemetry semantic conventions where one exists
(``rpc.client.duration`` with ``rpc.system = "aws-api"`` for AWS calls);
gitopsd's own are under ``gitopsd.``. docs/observability.md lists each with
its attributes and its Prometheus name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

SCOPE = "gitopsd"

tracer = trace.get_tracer(SCOPE)
meter = metrics.get_meter(SCOPE)

#: Attribute names (semantic conventions where they exist).
APP = "gitopsd.app"
RESULT = "gitopsd.result"
STAGE = "gitopsd.stage"
MODE = "gitopsd.mode"
SOURCE = "gitopsd.source"
REVISION = "vcs.ref.head.revision"
REF = "vcs.ref.head.name"
RPC_SYSTEM = "rpc.system"
RPC_SERVICE = "rpc.service"
RPC_METHOD = "rpc.method"
REQUEST_ID = "aws.request_id"
ATTEMPTS = "gitopsd.aws.attempts"
THROTTLED = "gitopsd.aws.throttled"
OUTCOME = "gitopsd.outcome"
ERROR_TYPE = "error.type"
SERVICE_DEPLOYMENT = "aws.ecs.service_deployment.arn"
SERVICE = "aws.ecs.service.name"
CLUSTER = "aws.ecs.cluster.arn"
NOTIFIER = "gitopsd.notifier"
CONDITION = "gitopsd.condition"
STATUS = "gitopsd.status"

reconcile_duration = meter.create_histogram(
    "gitopsd.reconcile.duration",
    unit="s",
    description="Duration of one reconcile pass of one app, by app, mode and result.",
)
syncs = meter.create_counter(
    "gitopsd.syncs",
    unit="{sync}",
    description="Sync passes by app and result (the pass's reason).",
)
rollouts = meter.create_counter(
    "gitopsd.rollouts",
    unit="{rollout}",
    description="Rollouts judged, by app and result (COMPLETED, FAILED, ROLLED_BACK...).",
)
drift_detected = meter.create_counter(
    "gitopsd.drift.detected",
    unit="{drift}",
    description="Times live state was found to differ from Git between commits, by app.",
)
drift_healed = meter.create_counter(
    "gitopsd.drift.healed",
    unit="{drift}",
    description="Times drift was reverted to Git, by app.",
)
aws_calls = meter.create_counter(
    "gitopsd.aws.calls",
    unit="{call}",
    description="AWS API attempts by service, operation and outcome (ok, throttled, error).",
)
aws_duration = meter.create_histogram(
    "rpc.client.duration",
    unit="s",
    description="Duration of each AWS API attempt (OpenTelemetry RPC semantic conventions).",
)
git_fetch_duration = meter.create_histogram(
    "gitopsd.git.fetch.duration",
    unit="s",
    description="Duration of a Git fetch, by source and result.",
)
git_fetch_bytes = meter.create_counter(
    "gitopsd.git.fetch.bytes",
    unit="By",
    description="Bytes of pack data a Git fetch downloaded, by source.",
)
notifier_deliveries = meter.create_counter(
    "gitopsd.notifier.deliveries",
    unit="{delivery}",
    description=(
        "Alerts by notifier and result: sent, failed (after retries), suppressed (a repeat "
        "within the window), dropped (queue full), filtered (routing)."
    ),
)
plugin_errors = meter.create_counter(
    "gitopsd.plugin.errors",
    unit="{error}",
    description="Plugin hook calls that raised or timed out, by plugin and result.",
)

# -- observed: the conditions of the apps of the running agent ---------------------------

#: One observation: (app, condition type, status) for each condition of each app.
ConditionSource = Callable[[], Iterable[tuple[str, str, str]]]
_condition_sources: list[ConditionSource] = []
_STATUSES = ("True", "False", "Unknown")


def observe_conditions(source: ConditionSource) -> Callable[[], None]:
    """Report ``source``'s app conditions in ``gitopsd.app.condition``; returns the remover."""
    _condition_sources.append(source)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            _condition_sources.remove(source)

    return remove


def _observe_conditions(_: CallbackOptions) -> Iterable[Observation]:
    for source in list(_condition_sources):
        for app, condition, status in source():
            for candidate in _STATUSES:
                yield Observation(
                    1 if candidate == status else 0,
                    {APP: app, CONDITION: condition, STATUS: candidate},
                )


app_condition = meter.create_observable_gauge(
    "gitopsd.app.condition",
    callbacks=[_observe_conditions],
    description=(
        "1 for the current status (True, False, Unknown) of each condition (Ready, "
        "Reconciling, Stalled) of each app, 0 for the others."
    ),
)
