"""The blue/green family (BLUE_GREEN, LINEAR, CANARY) as a plan of lifecycle phases.

ECS's native strategies walk fixed lifecycle stages (RECONCILE_SERVICE,
PRE_SCALE_UP, SCALE_UP, POST_SCALE_UP, TEST_TRAFFIC_SHIFT,
POST_TEST_TRAFFIC_SHIFT, PRODUCTION_TRAFFIC_SHIFT,
POST_PRODUCTION_TRAFFIC_SHIFT, BAKE_TIME, CLEAN_UP) and differ only in how
production traffic moves: BLUE_GREEN 0 -> 100 at once, LINEAR in
``stepPercent`` steps with ``stepBakeTimeInMinutes`` between them, CANARY
``canaryPercent`` then, after ``canaryBakeTimeInMinutes``, 100. This module
turns a ``deploymentConfiguration`` into that plan (a list of :class:`Phase`)
and reads its lifecycle hooks; :mod:`gitopsd.local_aws.deployments` walks the
plan over simulated time. It also holds the CreateService/UpdateService checks
of these fields (:func:`validate_deployment`).

A PRE_PRODUCTION_TRAFFIC_SHIFT hook runs before every production shift step,
in a phase of its own; ECS's ``lifecycleStage`` enum has no such value, so that
phase reports PRODUCTION_TRAFFIC_SHIFT (with the traffic not yet moved).

Pure module: plain dicts in, frozen values out; no moto, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from gitopsd.local_aws.records import (
    ACTION_CONTINUE,
    ACTION_ROLLBACK,
    CANARY,
    HOOK_LAMBDA,
    HOOK_PAUSE,
    LINEAR,
    ROLLING,
    STAGED_STRATEGIES,
    SimulationError,
)

RECONCILE_SERVICE = "RECONCILE_SERVICE"
PRE_SCALE_UP = "PRE_SCALE_UP"
SCALE_UP = "SCALE_UP"
POST_SCALE_UP = "POST_SCALE_UP"
TEST_TRAFFIC_SHIFT = "TEST_TRAFFIC_SHIFT"
POST_TEST_TRAFFIC_SHIFT = "POST_TEST_TRAFFIC_SHIFT"
PRE_PRODUCTION_TRAFFIC_SHIFT = "PRE_PRODUCTION_TRAFFIC_SHIFT"
PRODUCTION_TRAFFIC_SHIFT = "PRODUCTION_TRAFFIC_SHIFT"
POST_PRODUCTION_TRAFFIC_SHIFT = "POST_PRODUCTION_TRAFFIC_SHIFT"
BAKE_TIME = "BAKE_TIME"
CLEAN_UP = "CLEAN_UP"

#: ``lifecycleStage`` values in the order a deployment passes them.
STAGE_ORDER = (
    RECONCILE_SERVICE,
    PRE_SCALE_UP,
    SCALE_UP,
    POST_SCALE_UP,
    TEST_TRAFFIC_SHIFT,
    POST_TEST_TRAFFIC_SHIFT,
    PRODUCTION_TRAFFIC_SHIFT,
    POST_PRODUCTION_TRAFFIC_SHIFT,
    BAKE_TIME,
    CLEAN_UP,
)
#: Stages a hook may name (``DeploymentLifecycleHookStage``).
HOOK_STAGES = (
    RECONCILE_SERVICE,
    PRE_SCALE_UP,
    POST_SCALE_UP,
    TEST_TRAFFIC_SHIFT,
    POST_TEST_TRAFFIC_SHIFT,
    PRE_PRODUCTION_TRAFFIC_SHIFT,
    PRODUCTION_TRAFFIC_SHIFT,
    POST_PRODUCTION_TRAFFIC_SHIFT,
)
#: Stages where only AWS_LAMBDA hooks may run.
LAMBDA_ONLY_STAGES = (TEST_TRAFFIC_SHIFT, PRODUCTION_TRAFFIC_SHIFT)
MAX_HOOKS_PER_TYPE = 10

DEFAULT_STEP_PERCENT = 10.0
DEFAULT_STEP_BAKE_MINUTES = 6
DEFAULT_CANARY_PERCENT = 5.0
DEFAULT_CANARY_BAKE_MINUTES = 10
#: ``timeoutConfiguration`` defaults (the API reference: 24 hours, then ROLLBACK).
DEFAULT_HOOK_TIMEOUT_MINUTES = 1440
DEFAULT_HOOK_TIMEOUT_ACTION = ACTION_ROLLBACK
MAX_BAKE_MINUTES = 1440


@dataclass(frozen=True)
class Phase:
    """One piece of a staged deployment: a reported stage, its hooks, what it does."""

    #: ``lifecycleStage`` while the phase lasts.
    stage: str
    #: The configured hook stage whose hooks run at the phase's start (None: none).
    hook_stage: str | None
    #: Production / test traffic weight of the target revision from the phase's start.
    production_weight: float | None = None
    test_weight: float | None = None
    #: Configured minutes the phase waits after its start (bake times).
    wait_minutes: float = 0.0
    #: SCALE_UP: the phase ends once the green revision runs its desired count.
    scale_up: bool = False
    #: CLEAN_UP: the blue revision's tasks stop when the phase ends.
    clean_up: bool = False


@dataclass(frozen=True)
class HookSpec:
    """One entry of ``deploymentConfiguration.lifecycleHooks``."""

    target_type: str
    target_arn: str | None
    stages: tuple[str, ...]
    timeout_minutes: float
    timeout_action: str


def strategy_of(configuration: Mapping[str, Any] | None) -> str:
    """``deploymentConfiguration.strategy`` (ROLLING when absent)."""
    return str((configuration or {}).get("strategy") or ROLLING)


def hook_specs(configuration: Mapping[str, Any]) -> list[HookSpec]:
    """The lifecycle hooks of a deployment configuration, defaults filled in."""
    specs = []
    for hook in configuration.get("lifecycleHooks") or []:
        timeout = hook.get("timeoutConfiguration") or {}
        minutes = timeout.get("timeoutInMinutes")
        specs.append(
            HookSpec(
                target_type=str(hook.get("targetType") or HOOK_LAMBDA),
                target_arn=hook.get("hookTargetArn"),
                stages=tuple(hook.get("lifecycleStages") or ()),
                timeout_minutes=float(DEFAULT_HOOK_TIMEOUT_MINUTES if minutes is None else minutes),
                timeout_action=str(timeout.get("action") or DEFAULT_HOOK_TIMEOUT_ACTION),
            )
        )
    return specs


def production_steps(configuration: Mapping[str, Any]) -> list[tuple[float, float]]:
    """``(weight, wait minutes after it)`` of each production shift step of a strategy."""
    strategy = strategy_of(configuration)
    if strategy == LINEAR:
        linear = configuration.get("linearConfiguration") or {}
        step = float(linear.get("stepPercent") or DEFAULT_STEP_PERCENT)
        bake = linear.get("stepBakeTimeInMinutes")
        wait = float(DEFAULT_STEP_BAKE_MINUTES if bake is None else bake)
        weights: list[float] = []
        k = 1
        while not weights or weights[-1] < 100.0:
            weights.append(min(100.0, round(k * step, 1)))
            k += 1
        return [(w, wait if w < 100.0 else 0.0) for w in weights]
    if strategy == CANARY:
        canary = configuration.get("canaryConfiguration") or {}
        percent = float(canary.get("canaryPercent") or DEFAULT_CANARY_PERCENT)
        bake = canary.get("canaryBakeTimeInMinutes")
        wait = float(DEFAULT_CANARY_BAKE_MINUTES if bake is None else bake)
        if percent >= 100.0:
            return [(100.0, 0.0)]
        return [(percent, wait), (100.0, 0.0)]
    return [(100.0, 0.0)]


def plan(configuration: Mapping[str, Any]) -> list[Phase]:
    """The phases a staged deployment with this configuration walks, in order."""
    specs = hook_specs(configuration)
    pre_shift_hooks = any(PRE_PRODUCTION_TRAFFIC_SHIFT in s.stages for s in specs)
    phases = [
        Phase(RECONCILE_SERVICE, RECONCILE_SERVICE),
        Phase(PRE_SCALE_UP, PRE_SCALE_UP),
        Phase(SCALE_UP, None, scale_up=True),
        Phase(POST_SCALE_UP, POST_SCALE_UP),
        Phase(TEST_TRAFFIC_SHIFT, TEST_TRAFFIC_SHIFT, test_weight=100.0),
        Phase(POST_TEST_TRAFFIC_SHIFT, POST_TEST_TRAFFIC_SHIFT),
    ]
    for weight, wait in production_steps(configuration):
        if pre_shift_hooks:
            phases.append(Phase(PRODUCTION_TRAFFIC_SHIFT, PRE_PRODUCTION_TRAFFIC_SHIFT))
        phases.append(
            Phase(
                PRODUCTION_TRAFFIC_SHIFT,
                PRODUCTION_TRAFFIC_SHIFT,
                production_weight=weight,
                wait_minutes=wait,
            )
        )
    bake = configuration.get("bakeTimeInMinutes")
    phases += [
        Phase(POST_PRODUCTION_TRAFFIC_SHIFT, POST_PRODUCTION_TRAFFIC_SHIFT),
        Phase(BAKE_TIME, None, wait_minutes=float(bake or 0)),
        Phase(CLEAN_UP, None, clean_up=True),
    ]
    return phases


def minutes(count: float, minute: timedelta) -> timedelta:
    """``count`` configured minutes in simulated time."""
    return minute * count


# ------------------------------------------------------------------ validation


def validate_deployment(
    configuration: Mapping[str, Any] | None, load_balancers: Sequence[Mapping[str, Any]] | None
) -> None:
    """The checks CreateService/UpdateService make on strategy, hooks and load balancers.

    Raises :class:`SimulationError` (InvalidParameterException) with the first
    problem found.
    """
    config = configuration or {}
    strategy = strategy_of(config)
    if strategy not in (ROLLING, *sorted(STAGED_STRATEGIES)):
        raise SimulationError(
            f"Invalid deployment strategy '{strategy}'. "
            "Valid values are ROLLING, BLUE_GREEN, LINEAR and CANARY."
        )
    hooks = list(config.get("lifecycleHooks") or [])
    if hooks and strategy == ROLLING:
        raise SimulationError(
            "Lifecycle hooks are only supported with the BLUE_GREEN, LINEAR and CANARY "
            "deployment strategies."
        )
    if strategy in STAGED_STRATEGIES:
        for index, lb in enumerate(load_balancers or []):
            if not lb.get("advancedConfiguration"):
                raise SimulationError(
                    f"loadBalancers[{index}].advancedConfiguration must be specified when the "
                    f"deployment strategy is {strategy}."
                )
            advanced = lb["advancedConfiguration"]
            for key in ("alternateTargetGroupArn", "productionListenerRule"):
                if not advanced.get(key):
                    raise SimulationError(
                        f"loadBalancers[{index}].advancedConfiguration.{key} must be specified "
                        f"when the deployment strategy is {strategy}."
                    )
    _validate_numbers(config, strategy)
    _validate_hooks(hooks)


def _validate_numbers(config: Mapping[str, Any], strategy: str) -> None:
    bake = config.get("bakeTimeInMinutes")
    if bake is not None and not 0 <= int(bake) <= MAX_BAKE_MINUTES:
        raise SimulationError(
            f"bakeTimeInMinutes must be between 0 and {MAX_BAKE_MINUTES}, got {bake}."
        )
    linear = config.get("linearConfiguration")
    if linear is not None and strategy != LINEAR:
        raise SimulationError("linearConfiguration is only valid with the LINEAR strategy.")
    canary = config.get("canaryConfiguration")
    if canary is not None and strategy != CANARY:
        raise SimulationError("canaryConfiguration is only valid with the CANARY strategy.")
    checks: list[tuple[str, Any, float, float]] = []
    if linear:
        checks += [
            ("linearConfiguration.stepPercent", linear.get("stepPercent"), 3.0, 100.0),
            (
                "linearConfiguration.stepBakeTimeInMinutes",
                linear.get("stepBakeTimeInMinutes"),
                0,
                MAX_BAKE_MINUTES,
            ),
        ]
    if canary:
        checks += [
            ("canaryConfiguration.canaryPercent", canary.get("canaryPercent"), 0.1, 100.0),
            (
                "canaryConfiguration.canaryBakeTimeInMinutes",
                canary.get("canaryBakeTimeInMinutes"),
                0,
                MAX_BAKE_MINUTES,
            ),
        ]
    for name, value, low, high in checks:
        if value is not None and not low <= float(value) <= high:
            raise SimulationError(f"{name} must be between {low} and {high}, got {value}.")


def _validate_hooks(hooks: Sequence[Mapping[str, Any]]) -> None:
    counts = {HOOK_LAMBDA: 0, HOOK_PAUSE: 0}
    for index, hook in enumerate(hooks):
        where = f"lifecycleHooks[{index}]"
        target_type = hook.get("targetType") or HOOK_LAMBDA
        if target_type not in counts:
            raise SimulationError(
                f"{where}.targetType '{target_type}' is invalid. Valid values are AWS_LAMBDA "
                "and PAUSE."
            )
        counts[target_type] += 1
        if counts[target_type] > MAX_HOOKS_PER_TYPE:
            raise SimulationError(
                f"At most {MAX_HOOKS_PER_TYPE} lifecycle hooks of type {target_type} are allowed."
            )
        if target_type == HOOK_LAMBDA and not hook.get("hookTargetArn"):
            raise SimulationError(f"{where}.hookTargetArn must be specified for AWS_LAMBDA hooks.")
        stages = list(hook.get("lifecycleStages") or [])
        if not stages:
            raise SimulationError(f"{where}.lifecycleStages must be specified.")
        for stage in stages:
            if stage not in HOOK_STAGES:
                raise SimulationError(
                    f"{where}.lifecycleStages: '{stage}' is not a valid lifecycle stage for a "
                    f"hook. Valid values are {', '.join(HOOK_STAGES)}."
                )
            if target_type == HOOK_PAUSE and stage in LAMBDA_ONLY_STAGES:
                raise SimulationError(
                    f"{where}.lifecycleStages: PAUSE hooks cannot be configured at the "
                    f"{stage} stage; it is only valid for AWS_LAMBDA hooks."
                )
        timeout = hook.get("timeoutConfiguration") or {}
        action = timeout.get("action")
        if action is not None and action not in (ACTION_CONTINUE, ACTION_ROLLBACK):
            raise SimulationError(
                f"{where}.timeoutConfiguration.action '{action}' is invalid. Valid values are "
                "CONTINUE and ROLLBACK."
            )
        minutes_value = timeout.get("timeoutInMinutes")
        if minutes_value is not None and int(minutes_value) < 1:
            raise SimulationError(
                f"{where}.timeoutConfiguration.timeoutInMinutes must be at least 1."
            )
