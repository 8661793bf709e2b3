"""Hypothesis strategies: Service specs with native-strategy deployment configurations.

Every generated spec is valid by gitopsd's strategy rules (and so by ECS's): a
traffic-shifting strategy has a load balancer with advancedConfiguration, hooks
only with such a strategy and on stages their type may use, a Lambda hook with its
function and role, linear/canary blocks only with their strategy. Percentages are
drawn as ints or floats, as a manifest may write them. Shared by the pure property
test (tests/plan/test_ecs_strategy_normalise.py) and the one against the local
endpoint (tests/e2e/test_strategy_preflight.py).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from gitopsd.backends.ecs.strategy_rules import (
    NO_PAUSE_STAGES,
    hook_stages,
    strategies,
    traffic_shifting_strategies,
)

ACCOUNT = "123456789012"
TG = f"arn:aws:elasticloadbalancing:us-east-1:{ACCOUNT}:targetgroup"
RULE = f"arn:aws:elasticloadbalancing:us-east-1:{ACCOUNT}:listener-rule/app/shop/1/2"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/ecs-infrastructure"
FUNCTION = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:smoke"

_minutes = st.integers(min_value=0, max_value=1440)


def _percent(low_tenths: int) -> st.SearchStrategy[float | int]:
    """A multiple of 0.1 from ``low_tenths``/10 to 100, as a float or (when whole) an int."""
    tenths = st.integers(min_value=low_tenths, max_value=1000)
    return st.one_of(
        tenths.map(lambda t: round(t / 10, 1)),
        tenths.filter(lambda t: t % 10 == 0).map(lambda t: t // 10),
    )


def _stages(allowed: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(allowed), min_size=1, max_size=3, unique=True)


@st.composite
def hooks(draw: st.DrawFn) -> dict[str, Any]:
    """One lifecycle hook, PAUSE or AWS_LAMBDA (the type written or left to its default)."""
    stages = sorted(hook_stages())
    if draw(st.booleans()):
        hook: dict[str, Any] = {
            "targetType": "PAUSE",
            "lifecycleStages": draw(_stages([s for s in stages if s not in NO_PAUSE_STAGES])),
        }
    else:
        hook = {
            "hookTargetArn": FUNCTION,
            "roleArn": ROLE,
            "lifecycleStages": draw(_stages(stages)),
        }
        if draw(st.booleans()):
            hook["targetType"] = "AWS_LAMBDA"
    if draw(st.booleans()):
        timeout: dict[str, Any] = {}
        if draw(st.booleans()):
            timeout["timeoutInMinutes"] = draw(st.integers(min_value=1, max_value=1440))
        if draw(st.booleans()):
            timeout["action"] = draw(st.sampled_from(["CONTINUE", "ROLLBACK"]))
        hook["timeoutConfiguration"] = timeout
    return hook


@st.composite
def deployment_configurations(draw: st.DrawFn) -> dict[str, Any]:
    """A deploymentConfiguration, valid by the strategy rules, with any field left out."""
    strategy = draw(st.sampled_from(strategies()))
    config: dict[str, Any] = {}
    if strategy != "ROLLING" or draw(st.booleans()):
        config["strategy"] = strategy
    if strategy in traffic_shifting_strategies():
        if draw(st.booleans()):
            config["bakeTimeInMinutes"] = draw(_minutes)
        found = draw(st.lists(hooks(), max_size=3))
        if found:
            config["lifecycleHooks"] = found
    else:
        if draw(st.booleans()):
            breaker: dict[str, Any] = {
                "enable": draw(st.booleans()),
                "rollback": draw(st.booleans()),
            }
            if draw(st.booleans()):
                breaker["resetOnHealthyTask"] = draw(st.booleans())
            if draw(st.booleans()):
                breaker["thresholdConfiguration"] = {
                    "type": draw(
                        st.sampled_from(["COUNT", "BOUNDED_PERCENT", "UNBOUNDED_PERCENT"])
                    ),
                    "value": draw(st.integers(min_value=1, max_value=100)),
                }
            config["deploymentCircuitBreaker"] = breaker
    if strategy == "LINEAR" and draw(st.booleans()):
        linear: dict[str, Any] = {}
        if draw(st.booleans()):
            linear["stepPercent"] = draw(_percent(30))
        if draw(st.booleans()):
            linear["stepBakeTimeInMinutes"] = draw(_minutes)
        config["linearConfiguration"] = linear
    if strategy == "CANARY" and draw(st.booleans()):
        canary: dict[str, Any] = {}
        if draw(st.booleans()):
            canary["canaryPercent"] = draw(_percent(1))
        if draw(st.booleans()):
            canary["canaryBakeTimeInMinutes"] = draw(_minutes)
        config["canaryConfiguration"] = canary
    if draw(st.booleans()):
        names = draw(
            st.lists(st.sampled_from(["cpu-high", "5xx", "latency-p99", "errors"]), unique=True)
        )
        config["alarms"] = {
            "alarmNames": names,
            "enable": draw(st.booleans()),
            "rollback": draw(st.booleans()),
        }
    return config


def load_balancers(strategy: str, with_test_rule: bool) -> list[dict[str, Any]]:
    """One load balancer; with advancedConfiguration for a traffic-shifting strategy."""
    balancer: dict[str, Any] = {
        "targetGroupArn": f"{TG}/blue/1",
        "containerName": "web",
        "containerPort": 80,
    }
    if strategy in traffic_shifting_strategies():
        advanced = {
            "alternateTargetGroupArn": f"{TG}/green/1",
            "productionListenerRule": f"{RULE}/3",
            "roleArn": ROLE,
        }
        if with_test_rule:
            advanced["testListenerRule"] = f"{RULE}/4"
        balancer["advancedConfiguration"] = advanced
    return [balancer]


@st.composite
def service_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A Service spec (CreateService input, no cluster) around a generated configuration."""
    config = draw(deployment_configurations())
    spec: dict[str, Any] = {
        "serviceName": "web",
        "taskDefinition": "web",
        "desiredCount": 1,
        "launchType": "EC2",
        "loadBalancers": load_balancers(config.get("strategy", "ROLLING"), draw(st.booleans())),
    }
    if config:
        spec["deploymentConfiguration"] = config
    return spec
