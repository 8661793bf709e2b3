"""Native-strategy rules (gitopsd.backends.ecs.strategy_rules): one test per rule.

Manifests are parsed as the loader parses them and validated as ``gitopsd validate``
does, so each error is checked with its file, line and field path.
"""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from gitopsd.backends.ecs import validate as validate_module
from gitopsd.backends.ecs.strategy_rules import (
    MAX_HOOKS_PER_TYPE,
    check_changeset,
    hookless_stages,
    strategy_findings,
    traffic_shifting_strategies,
)
from gitopsd.backends.ecs.validate import validate_documents
from gitopsd.errors import PlanError
from gitopsd.manifests.loader import parse_file
from gitopsd.model import Action, ChangeSet, Origin, ResourceChange

TG = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup"
RULE = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener-rule/app/shop/1/2/3"
ROLE = "arn:aws:iam::123456789012:role/ecs-elb"
LAMBDA = "arn:aws:lambda:eu-west-1:123456789012:function:smoke"

HEAD = """\
kind: Service
serviceName: web
taskDefinition: web
desiredCount: 2
"""
BALANCER = f"""\
loadBalancers:
  - targetGroupArn: {TG}/blue/1
    containerName: web
    containerPort: 80
    advancedConfiguration:
      alternateTargetGroupArn: {TG}/green/1
      productionListenerRule: {RULE}
      roleArn: {ROLE}
"""
TD = """\
---
kind: TaskDefinition
family: web
containerDefinitions:
  - name: web
    image: nginx
"""


def problems(body: str) -> list[str]:
    """``file:line: field: message`` of each problem of a service (plus its task definition)."""
    docs, found = parse_file("app/service.yaml", (HEAD + body + TD).encode())
    assert found == []
    return [str(p) for p in validate_documents(docs)]


def line_of(body: str, text: str) -> int:
    lines = (HEAD + body).splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def test_a_complete_blue_green_service_is_valid() -> None:
    body = "deploymentConfiguration:\n  strategy: BLUE_GREEN\n  bakeTimeInMinutes: 5\n" + BALANCER
    assert problems(body) == []


@pytest.mark.parametrize("strategy", sorted(traffic_shifting_strategies()))
def test_a_load_balancer_without_advanced_configuration_is_refused(strategy: str) -> None:
    body = f"""\
deploymentConfiguration:
  strategy: {strategy}
loadBalancers:
  - targetGroupArn: {TG}/blue/1
    containerName: web
    containerPort: 80
"""
    line = line_of(body, "targetGroupArn")
    assert problems(body) == [
        f"app/service.yaml:{line}: loadBalancers[0]: strategy {strategy} needs "
        "advancedConfiguration on each load balancer (alternateTargetGroupArn, "
        "productionListenerRule, roleArn): add it, or use strategy ROLLING"
    ]


def test_each_missing_advanced_configuration_member_is_named() -> None:
    body = BALANCER.replace(f"      productionListenerRule: {RULE}\n", "").replace(
        f"      roleArn: {ROLE}\n", ""
    )
    body = "deploymentConfiguration:\n  strategy: CANARY\n" + body
    line = line_of(body, "advancedConfiguration")
    assert problems(body) == [
        f"app/service.yaml:{line}: loadBalancers[0].advancedConfiguration.{member}: missing "
        f"required field {member!r}: strategy CANARY needs it on each load balancer to shift "
        "traffic"
        for member in ("productionListenerRule", "roleArn")
    ]


def test_rolling_needs_no_advanced_configuration() -> None:
    body = f"loadBalancers:\n  - targetGroupArn: {TG}/blue/1\n    containerName: web\n"
    assert problems(body) == []


def test_a_traffic_shifting_strategy_needs_the_ecs_controller() -> None:
    body = "deploymentController:\n  type: EXTERNAL\ndeploymentConfiguration:\n  strategy: LINEAR\n"
    line = line_of(body, "type: EXTERNAL")
    assert problems(body) == [
        f"app/service.yaml:{line}: deploymentController.type: strategy LINEAR needs the ECS "
        "deployment controller, not EXTERNAL: set deploymentController type ECS (or remove "
        "deploymentController)"
    ]


def test_without_load_balancers_or_service_connect_it_only_warns() -> None:
    findings = strategy_findings({"deploymentConfiguration": {"strategy": "BLUE_GREEN"}})
    assert [(f.pointer, f.warning) for f in findings] == [
        ("/deploymentConfiguration/strategy", True)
    ]
    connect = {"enabled": True, "namespace": "shop"}
    spec = {
        "deploymentConfiguration": {"strategy": "BLUE_GREEN"},
        "serviceConnectConfiguration": connect,
    }
    assert strategy_findings(spec) == []


@pytest.mark.parametrize(
    ("block", "owner", "strategy"),
    [
        ("linearConfiguration", "LINEAR", "CANARY"),
        ("linearConfiguration", "LINEAR", "ROLLING"),
        ("canaryConfiguration", "CANARY", "LINEAR"),
        ("canaryConfiguration", "CANARY", "BLUE_GREEN"),
    ],
)
def test_a_strategy_block_only_with_its_strategy(block: str, owner: str, strategy: str) -> None:
    body = f"deploymentConfiguration:\n  strategy: {strategy}\n  {block}: {{}}\n" + BALANCER
    line = line_of(body, block)
    assert problems(body) == [
        f"app/service.yaml:{line}: deploymentConfiguration.{block}: {block} applies only to "
        f"strategy {owner} (strategy is {strategy}): set strategy {owner}, or remove {block}"
    ]


def test_early_success_criteria_only_with_rolling() -> None:
    body = (
        "deploymentConfiguration:\n  strategy: BLUE_GREEN\n  earlySuccessCriteria:\n"
        "    enable: true\n" + BALANCER
    )
    (problem,) = problems(body)
    assert problem.startswith(
        f"app/service.yaml:{line_of(body, 'earlySuccessCriteria')}: "
        "deploymentConfiguration.earlySuccessCriteria: earlySuccessCriteria applies only to "
        "strategy ROLLING"
    )


def hooks(*entries: str, strategy: str = "BLUE_GREEN") -> str:
    return (
        f"deploymentConfiguration:\n  strategy: {strategy}\n  lifecycleHooks:\n"
        + "".join(entries)
        + BALANCER
    )


PAUSE = "    - targetType: PAUSE\n      lifecycleStages: [{}]\n"
LAMBDA_HOOK = (
    f"    - hookTargetArn: {LAMBDA}\n      roleArn: {ROLE}\n      lifecycleStages: [{{}}]\n"
)


@pytest.mark.parametrize("stage", ["TEST_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT"])
def test_a_pause_hook_cannot_sit_on_a_traffic_shift(stage: str) -> None:
    body = hooks(PAUSE.format(f"POST_SCALE_UP, {stage}"))
    line = line_of(body, "lifecycleStages")
    assert problems(body) == [
        f"app/service.yaml:{line}: deploymentConfiguration.lifecycleHooks[0].lifecycleStages[1]: "
        f"a PAUSE hook cannot run at {stage} (ECS is shifting traffic then; only AWS_LAMBDA "
        "hooks can): pause at PRE_/POST_ stages instead"
    ]
    assert problems(hooks(LAMBDA_HOOK.format(stage))) == []  # a Lambda hook may


@pytest.mark.parametrize("stage", sorted(hookless_stages()))
def test_no_hook_sits_on_scale_up_bake_time_or_clean_up(stage: str) -> None:
    body = hooks(LAMBDA_HOOK.format(stage))
    (problem,) = problems(body)  # replaces the model's "invalid value" for the same field
    assert problem.startswith(
        f"app/service.yaml:{line_of(body, 'lifecycleStages')}: "
        f"deploymentConfiguration.lifecycleHooks[0].lifecycleStages[0]: no hook can run at {stage}"
    )
    assert stage in {"SCALE_UP", "BAKE_TIME", "CLEAN_UP"}


def test_a_lambda_hook_needs_its_function_and_role() -> None:
    body = hooks("    - lifecycleStages: [POST_SCALE_UP]\n")
    line = line_of(body, "lifecycleStages: [POST")
    assert problems(body) == [
        f"app/service.yaml:{line}: deploymentConfiguration.lifecycleHooks[0].{member}: missing "
        f"required field {member!r}: an AWS_LAMBDA hook (the default targetType) needs the "
        "function's ARN and a role ECS invokes it with"
        for member in ("hookTargetArn", "roleArn")
    ]


def test_a_hook_needs_stages() -> None:
    (problem,) = problems(hooks("    - targetType: PAUSE\n"))
    assert "lifecycleHooks[0].lifecycleStages: missing required field 'lifecycleStages'" in problem


def test_at_most_ten_hooks_of_a_type() -> None:
    assert problems(hooks(*[PAUSE.format("POST_SCALE_UP")] * MAX_HOOKS_PER_TYPE)) == []
    body = hooks(*[PAUSE.format("POST_SCALE_UP")] * (MAX_HOOKS_PER_TYPE + 1))
    (problem,) = problems(body)
    assert problem == (
        f"app/service.yaml:{line_of(body, 'lifecycleHooks')}: deploymentConfiguration."
        "lifecycleHooks: 11 PAUSE hooks: ECS allows at most 10 per service"
    )


def test_hooks_with_rolling_are_refused() -> None:
    body = hooks(PAUSE.format("POST_SCALE_UP"), strategy="ROLLING")
    (problem,) = problems(body)
    assert problem == (
        f"app/service.yaml:{line_of(body, 'lifecycleHooks')}: deploymentConfiguration."
        "lifecycleHooks: lifecycle hooks run only in BLUE_GREEN, CANARY, LINEAR deployments "
        "(strategy is ROLLING): set deploymentConfiguration.strategy, or remove the hooks"
    )


def test_service_connect_with_another_controller_is_refused() -> None:
    for controller in ("CODE_DEPLOY", "EXTERNAL"):
        body = (
            f"deploymentController:\n  type: {controller}\n"
            "serviceConnectConfiguration:\n  enabled: true\n  namespace: shop\n"
        )
        assert problems(body) == [
            f"app/service.yaml:{line_of(body, 'enabled: true')}: serviceConnectConfiguration."
            f"enabled: Service Connect does not work with the {controller} deployment "
            "controller: use deploymentController type ECS, or turn Service Connect off"
        ]


def test_the_circuit_breaker_with_another_strategy_warns_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(validate_module, "_warned", set())
    body = (
        "deploymentConfiguration:\n  strategy: CANARY\n  deploymentCircuitBreaker:\n"
        "    enable: true\n    rollback: true\n" + BALANCER
    )
    with structlog.testing.capture_logs() as logs:
        assert problems(body) == []
        assert problems(body) == []
    warnings = [e for e in logs if e["event"] == "manifest.strategy_warning"]
    assert len(warnings) == 1
    assert warnings[0]["field"] == "deploymentConfiguration.deploymentCircuitBreaker.enable"
    assert warnings[0]["at"] == f"app/service.yaml:{line_of(body, 'enable: true')}"
    assert "acts on ROLLING deployments only" in warnings[0]["problem"]


def test_the_apply_preflight_refuses_what_render_would_have() -> None:
    spec: dict[str, Any] = {
        "serviceName": "web",
        "deploymentConfiguration": {"strategy": "BLUE_GREEN"},
        "loadBalancers": [{"targetGroupArn": f"{TG}/blue/1", "containerName": "web"}],
    }
    change = ResourceChange(
        "Service",
        "web",
        Action.CREATE,
        origin=Origin("app/service.yaml", 1),
        details={"spec": spec},
    )
    with pytest.raises(PlanError) as caught:
        check_changeset(ChangeSet(app="shop", revision=None, resources=(change,)))
    assert str(caught.value) == (
        "deployment strategy settings ECS would refuse or ignore; nothing was changed:\n"
        "  app/service.yaml:1: loadBalancers[0]: strategy BLUE_GREEN needs advancedConfiguration "
        "on each load balancer (alternateTargetGroupArn, productionListenerRule, roleArn): add "
        "it, or use strategy ROLLING"
    )
    noop = ResourceChange("Service", "web", Action.NOOP, details={"spec": spec})
    check_changeset(ChangeSet(app="shop", revision=None, resources=(noop,)))  # nothing to send


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(
        ["ROLLING", "LINEAR", "CANARY", "BLUE_GREEN", "PAUSE", "AWS_LAMBDA", "BAKE_TIME", "ECS"]
    ),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "strategy",
                    "lifecycleHooks",
                    "lifecycleStages",
                    "targetType",
                    "enabled",
                    "type",
                    "advancedConfiguration",
                    "deploymentCircuitBreaker",
                    "enable",
                ]
            ),
            inner,
            max_size=3,
        )
    ),
    max_leaves=12,
)
_specs = st.fixed_dictionaries(
    {},
    optional={
        "deploymentConfiguration": _json,
        "deploymentController": _json,
        "loadBalancers": _json,
        "serviceConnectConfiguration": _json,
    },
)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(spec=_specs)
def test_any_shape_gives_findings_never_an_internal_error(spec: dict[str, Any]) -> None:
    for finding in strategy_findings(spec):
        assert finding.pointer.startswith("/")
        assert finding.message
