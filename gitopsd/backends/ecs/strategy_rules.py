"""What ECS's native deployment strategies need, checked offline before anything is written.

botocore's model says which fields exist and their types; it cannot say that a
BLUE_GREEN, LINEAR or CANARY service needs ``advancedConfiguration`` on each load
balancer, which lifecycle stages take a PAUSE hook, or that the circuit breaker
acts on ROLLING only. AWS refuses such a service in the middle of a sync (or, worse,
accepts it and ignores what the user thought was a safety net). These rules are
pure functions of one Service spec (CreateService's input shape), so they run in
``gitopsd validate`` and every render (:mod:`.validate`, with each field's line) and
again in the apply pre-flight on the specs about to be sent (:func:`check_changeset`).

Enumerations come from botocore's model (strategies, controller types, hook target
types and stages), so a value AWS adds is known the day botocore knows it. What the
model does not say, and what is assumed here (from the ECS API reference and
developer guide):

- every strategy but ROLLING shifts traffic: with load balancers, each needs
  ``advancedConfiguration`` (alternateTargetGroupArn, productionListenerRule,
  roleArn); a service without load balancers is allowed (Service Connect, or a
  headless blue/green deployment that shifts no traffic: a warning without Service
  Connect);
- these strategies need the ECS deployment controller;
- ``linearConfiguration`` only with LINEAR, ``canaryConfiguration`` only with CANARY,
  ``earlySuccessCriteria`` only with ROLLING ("only valid when ..." in the reference:
  refused here rather than silently ignored);
- lifecycle hooks run in blue/green-family deployments only: with ROLLING they are
  refused (a PAUSE approval gate that never pauses is worse than an error);
- PAUSE hooks not at TEST_TRAFFIC_SHIFT or PRODUCTION_TRAFFIC_SHIFT; SCALE_UP,
  BAKE_TIME and CLEAN_UP (stages a deployment reports) take no hook at all;
  at most 10 PAUSE and 10 AWS_LAMBDA hooks; an AWS_LAMBDA hook (the default
  ``targetType``) needs ``hookTargetArn`` and ``roleArn``;
- the circuit breaker acts on ROLLING only: a warning with another strategy;
- Service Connect works with the ECS controller only (not CODE_DEPLOY or EXTERNAL).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gitopsd.backends.ecs.service_model import ecs_model
from gitopsd.errors import PlanError
from gitopsd.model import Action, ChangeSet, Origin
from gitopsd.pointer import child_pointer, display_path

ROLLING = "ROLLING"
LINEAR = "LINEAR"
CANARY = "CANARY"
ECS_CONTROLLER = "ECS"
LAMBDA_HOOK = "AWS_LAMBDA"
PAUSE_HOOK = "PAUSE"

#: What each load balancer of a traffic-shifting strategy needs in its advancedConfiguration.
ADVANCED_REQUIRED = ("alternateTargetGroupArn", "productionListenerRule", "roleArn")
#: Stages where ECS shifts traffic itself: only AWS_LAMBDA hooks may run there.
NO_PAUSE_STAGES = frozenset({"TEST_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT"})
#: At most this many hooks of one target type per service.
MAX_HOOKS_PER_TYPE = 10

_DC = "/deploymentConfiguration"
_HOOKS = f"{_DC}/lifecycleHooks"


@dataclass(frozen=True)
class Finding:
    """One rule broken: where (a JSON pointer into the spec), why, and whether it only warns."""

    pointer: str
    message: str
    warning: bool = False


def _enum(shape: str) -> tuple[str, ...]:
    return tuple(ecs_model().shape_for(shape).enum)


@functools.cache
def strategies() -> tuple[str, ...]:
    """Every ``deploymentConfiguration.strategy`` botocore knows."""
    return _enum("DeploymentStrategy")


@functools.cache
def traffic_shifting_strategies() -> frozenset[str]:
    """The blue/green family: every strategy but ROLLING."""
    return frozenset(strategies()) - {ROLLING}


@functools.cache
def hook_stages() -> frozenset[str]:
    """The lifecycle stages a hook may name (``DeploymentLifecycleHookStage``)."""
    return frozenset(_enum("DeploymentLifecycleHookStage"))


@functools.cache
def hookless_stages() -> frozenset[str]:
    """Stages a deployment reports that take no hook (SCALE_UP, BAKE_TIME, CLEAN_UP)."""
    return frozenset(_enum("ServiceDeploymentLifecycleStage")) - hook_stages()


def _family() -> str:
    return ", ".join(sorted(traffic_shifting_strategies()))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _items(value: Any) -> list[tuple[int, Mapping[str, Any]]]:
    if not isinstance(value, list):
        return []
    return [(i, v) for i, v in enumerate(value) if isinstance(v, Mapping)]


def strategy_findings(spec: Mapping[str, Any]) -> list[Finding]:
    """Every strategy rule a Service spec (CreateService input shape) breaks."""
    config = _mapping(spec.get("deploymentConfiguration"))
    strategy = config.get("strategy", ROLLING)
    if not isinstance(strategy, str):
        return []  # the model walk reports the type
    controller = _mapping(spec.get("deploymentController")).get("type", ECS_CONTROLLER)
    out: list[Finding] = []
    if strategy in traffic_shifting_strategies():
        out += _traffic_shifting(spec, strategy, controller)
    out += _strategy_blocks(config, strategy)
    out += _hooks(config, strategy)
    breaker = _mapping(config.get("deploymentCircuitBreaker"))
    if breaker.get("enable") is True and strategy != ROLLING:
        out.append(
            Finding(
                f"{_DC}/deploymentCircuitBreaker/enable",
                f"the circuit breaker acts on ROLLING deployments only; with strategy {strategy} "
                "ECS ignores it (use deployment alarms or lifecycle hooks to roll back)",
                warning=True,
            )
        )
    connect = _mapping(spec.get("serviceConnectConfiguration"))
    if (
        connect.get("enabled") is True
        and isinstance(controller, str)
        and controller != ECS_CONTROLLER
    ):
        out.append(
            Finding(
                "/serviceConnectConfiguration/enabled",
                f"Service Connect does not work with the {controller} deployment controller: "
                "use deploymentController type ECS, or turn Service Connect off",
            )
        )
    return out


def _traffic_shifting(spec: Mapping[str, Any], strategy: str, controller: Any) -> list[Finding]:
    out: list[Finding] = []
    if isinstance(controller, str) and controller != ECS_CONTROLLER:
        out.append(
            Finding(
                "/deploymentController/type",
                f"strategy {strategy} needs the ECS deployment controller, not {controller}: "
                "set deploymentController type ECS (or remove deploymentController)",
            )
        )
    balancers = _items(spec.get("loadBalancers"))
    for i, balancer in balancers:
        at = child_pointer("/loadBalancers", i)
        advanced = balancer.get("advancedConfiguration")
        if not isinstance(advanced, Mapping):
            out.append(
                Finding(
                    at,
                    f"strategy {strategy} needs advancedConfiguration on each load balancer "
                    f"({', '.join(ADVANCED_REQUIRED)}): add it, or use strategy ROLLING",
                )
            )
            continue
        for member in ADVANCED_REQUIRED:
            if not advanced.get(member):
                out.append(
                    Finding(
                        child_pointer(child_pointer(at, "advancedConfiguration"), member),
                        f"missing required field {member!r}: strategy {strategy} needs it on "
                        "each load balancer to shift traffic",
                    )
                )
    connect = _mapping(spec.get("serviceConnectConfiguration")).get("enabled") is True
    if not balancers and not connect:
        out.append(
            Finding(
                f"{_DC}/strategy",
                f"strategy {strategy} without load balancers or Service Connect: ECS runs the "
                "new revision beside the old one but shifts no traffic",
                warning=True,
            )
        )
    return out


def _strategy_blocks(config: Mapping[str, Any], strategy: str) -> list[Finding]:
    out: list[Finding] = []
    for block, owner in (("linearConfiguration", LINEAR), ("canaryConfiguration", CANARY)):
        if block in config and strategy != owner:
            out.append(
                Finding(
                    f"{_DC}/{block}",
                    f"{block} applies only to strategy {owner} (strategy is {strategy}): "
                    f"set strategy {owner}, or remove {block}",
                )
            )
    if "earlySuccessCriteria" in config and strategy != ROLLING:
        out.append(
            Finding(
                f"{_DC}/earlySuccessCriteria",
                f"earlySuccessCriteria applies only to strategy ROLLING (strategy is {strategy}): "
                "remove it, or use bakeTimeInMinutes",
            )
        )
    return out


def _hooks(config: Mapping[str, Any], strategy: str) -> list[Finding]:
    hooks = _items(config.get("lifecycleHooks"))
    if not hooks:
        return []
    if strategy not in traffic_shifting_strategies():
        return [
            Finding(
                _HOOKS,
                f"lifecycle hooks run only in {_family()} deployments (strategy is {strategy}): "
                "set deploymentConfiguration.strategy, or remove the hooks",
            )
        ]
    out: list[Finding] = []
    counts: dict[str, int] = {}
    for i, hook in hooks:
        at = child_pointer(_HOOKS, i)
        kind = hook.get("targetType", LAMBDA_HOOK)
        if isinstance(kind, str):
            counts[kind] = counts.get(kind, 0) + 1
        stages = hook.get("lifecycleStages")
        if not stages:
            out.append(
                Finding(
                    child_pointer(at, "lifecycleStages"),
                    "missing required field 'lifecycleStages': name the stages the hook runs at",
                )
            )
        for j, stage in enumerate(stages if isinstance(stages, list) else []):
            where = child_pointer(child_pointer(at, "lifecycleStages"), j)
            if not isinstance(stage, str):
                continue  # the model walk reports the type
            if stage in hookless_stages():
                out.append(
                    Finding(
                        where,
                        f"no hook can run at {stage} (hooks run at: "
                        f"{', '.join(_enum('DeploymentLifecycleHookStage'))})",
                    )
                )
            elif kind == PAUSE_HOOK and stage in NO_PAUSE_STAGES:
                out.append(
                    Finding(
                        where,
                        f"a PAUSE hook cannot run at {stage} (ECS is shifting traffic then; only "
                        "AWS_LAMBDA hooks can): pause at PRE_/POST_ stages instead",
                    )
                )
        if kind == LAMBDA_HOOK:
            for member in ("hookTargetArn", "roleArn"):
                if not hook.get(member):
                    out.append(
                        Finding(
                            child_pointer(at, member),
                            f"missing required field {member!r}: an AWS_LAMBDA hook (the default "
                            "targetType) needs the function's ARN and a role ECS invokes it with",
                        )
                    )
    for kind, count in sorted(counts.items()):
        if count > MAX_HOOKS_PER_TYPE:
            out.append(
                Finding(
                    _HOOKS,
                    f"{count} {kind} hooks: ECS allows at most {MAX_HOOKS_PER_TYPE} per service",
                )
            )
    return out


def spec_problems(
    specs: Iterable[tuple[Mapping[str, Any], Origin | None, str]],
) -> list[str]:
    """``file:line: field: why`` for each error (not warning) of the given Service specs."""
    out = []
    for spec, origin, label in specs:
        where = f"{origin.file}:{origin.line}" if origin else label
        for finding in strategy_findings(spec):
            if not finding.warning:
                out.append(f"{where}: {display_path(finding.pointer)}: {finding.message}")
    return out


def check_changeset(changeset: ChangeSet) -> None:
    """Refuse (:class:`PlanError`), before the first write, a Service about to be created or
    updated whose deployment strategy settings ECS would refuse or ignore (a path that
    skipped render's check). The line is the document's."""
    specs = [
        (r.details.get("spec", {}), r.origin, r.key)
        for r in changeset.resources
        if r.kind == "Service" and r.action is not Action.NOOP
    ]
    problems = spec_problems(specs)
    if problems:
        raise PlanError(
            "deployment strategy settings ECS would refuse or ignore; nothing was changed:\n  "
            + "\n  ".join(problems)
        )
