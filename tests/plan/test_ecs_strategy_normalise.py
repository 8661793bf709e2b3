"""Native-strategy fields never show a false difference, and real changes still show.

The live twins here are built from the ECS API reference's defaults (written out
below, independently of the rule tables): what AWS fills in for a LINEAR or CANARY
strategy, a hook's type and timeout, the circuit breaker's 2026 settings; percentages
come back as Doubles; alarm names, hook stages and hooks in any order.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gitopsd.backends.ecs.normalise import normalise_service, unowned_service_pointers
from gitopsd.backends.ecs.strategy_rules import strategy_findings
from gitopsd.plan.diff import diff

from .strategy_configs import ROLE, load_balancers, service_specs
from .test_ecs_properties import PROPERTY_SETTINGS


def changes(desired: dict[str, Any], live: dict[str, Any]) -> list[str]:
    found = diff(
        normalise_service(desired), normalise_service(live), unowned_service_pointers(desired)
    )
    return [c.path for c in found]


def as_aws_reports(spec: dict[str, Any], data: st.DataObject | None = None) -> dict[str, Any]:
    """The service as describe_services reports it: defaults filled in, order shuffled."""
    live = copy.deepcopy(spec)
    config = live.setdefault("deploymentConfiguration", {})
    strategy = config.setdefault("strategy", "ROLLING")
    config.setdefault("maximumPercent", 200)
    config.setdefault("minimumHealthyPercent", 100)
    config.setdefault("bakeTimeInMinutes", 0)
    breaker = config.setdefault("deploymentCircuitBreaker", {"enable": False, "rollback": False})
    breaker.setdefault("resetOnHealthyTask", True)
    breaker.setdefault("thresholdConfiguration", {"type": "BOUNDED_PERCENT", "value": 50})
    config.setdefault("alarms", {"alarmNames": [], "enable": False, "rollback": False})
    if strategy == "LINEAR":
        linear = config.setdefault("linearConfiguration", {})
        linear["stepPercent"] = float(linear.get("stepPercent", 10.0))
        linear.setdefault("stepBakeTimeInMinutes", 6)
    if strategy == "CANARY":
        canary = config.setdefault("canaryConfiguration", {})
        canary["canaryPercent"] = float(canary.get("canaryPercent", 5.0))
        canary.setdefault("canaryBakeTimeInMinutes", 10)
    for hook in config.get("lifecycleHooks", []):
        hook.setdefault("targetType", "AWS_LAMBDA")
        timeout = hook.setdefault("timeoutConfiguration", {})
        timeout.setdefault("timeoutInMinutes", 1440)
        timeout.setdefault("action", "ROLLBACK")
    live.setdefault("deploymentController", {"type": "ECS"})
    live["serviceArn"] = "arn:aws:ecs:us-east-1:123456789012:service/demo/web"
    live["status"] = "ACTIVE"
    if data is not None:
        alarms = config["alarms"]
        alarms["alarmNames"] = list(data.draw(st.permutations(alarms["alarmNames"])))
        for hook in config.get("lifecycleHooks", []):
            hook["lifecycleStages"] = list(data.draw(st.permutations(hook["lifecycleStages"])))
        if config.get("lifecycleHooks"):
            config["lifecycleHooks"] = list(data.draw(st.permutations(config["lifecycleHooks"])))
    return live


@PROPERTY_SETTINGS
@given(spec=service_specs(), data=st.data())
def test_generated_configurations_show_no_false_difference(
    spec: dict[str, Any], data: st.DataObject
) -> None:
    assert [f for f in strategy_findings(spec) if not f.warning] == []  # valid by the rules
    assert changes(spec, as_aws_reports(spec, data)) == []


def linear_service() -> dict[str, Any]:
    return {
        "serviceName": "web",
        "taskDefinition": "web",
        "desiredCount": 1,
        "loadBalancers": load_balancers("LINEAR", with_test_rule=False),
        "deploymentConfiguration": {
            "strategy": "LINEAR",
            "linearConfiguration": {"stepPercent": 10},
            "alarms": {"alarmNames": ["b", "a"], "enable": True, "rollback": True},
            "lifecycleHooks": [
                {"targetType": "PAUSE", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"]},
                {
                    "hookTargetArn": "arn:aws:lambda:us-east-1:1:function:f",
                    "roleArn": ROLE,
                    "lifecycleStages": ["POST_SCALE_UP", "PRE_SCALE_UP"],
                },
            ],
        },
    }


def test_int_and_float_percentages_are_one_value() -> None:
    spec = linear_service()
    live = as_aws_reports(spec)
    assert live["deploymentConfiguration"]["linearConfiguration"]["stepPercent"] == 10.0
    assert isinstance(live["deploymentConfiguration"]["linearConfiguration"]["stepPercent"], float)
    assert changes(spec, live) == []


def test_defaults_absent_on_the_live_side_are_no_difference_either() -> None:
    spec = linear_service()
    spec["deploymentConfiguration"]["linearConfiguration"] = {
        "stepPercent": 10.0,
        "stepBakeTimeInMinutes": 6,
    }
    spec["deploymentConfiguration"]["lifecycleHooks"][0]["timeoutConfiguration"] = {
        "timeoutInMinutes": 1440,
        "action": "ROLLBACK",
    }
    live = copy.deepcopy(linear_service())  # AWS echoing only what it was sent
    assert changes(spec, live) == []


def test_real_changes_still_show() -> None:
    spec = linear_service()
    live = as_aws_reports(spec)
    live["deploymentConfiguration"]["linearConfiguration"]["stepPercent"] = 20.0
    live["deploymentConfiguration"]["alarms"]["alarmNames"].append("c")
    live["deploymentConfiguration"]["lifecycleHooks"][0]["lifecycleStages"].append("PRE_SCALE_UP")
    live["deploymentConfiguration"]["lifecycleHooks"][0]["timeoutConfiguration"]["action"] = (
        "CONTINUE"
    )
    found = changes(spec, live)
    assert "/deploymentConfiguration/linearConfiguration/stepPercent" in found
    assert "/deploymentConfiguration/alarms/alarmNames/2" in found
    assert any(p.startswith("/deploymentConfiguration/lifecycleHooks/") for p in found)


def test_a_strategy_switch_shows() -> None:
    spec = linear_service()
    live = as_aws_reports(dict(spec, deploymentConfiguration={"strategy": "ROLLING"}))
    assert "/deploymentConfiguration/strategy" in changes(spec, live)
