"""Strategy plans, CreateService/UpdateService checks and the new knobs, without a server."""

from __future__ import annotations

from typing import Any

import pytest

from gitopsd.local_aws.records import SimulationError
from gitopsd.local_aws.settings import SettingsError, SimSettings
from gitopsd.local_aws.strategies import plan, production_steps, validate_deployment

LB = {"targetGroupArn": "arn:tg/blue", "containerName": "app", "containerPort": 80}
ADVANCED = {
    "alternateTargetGroupArn": "arn:tg/green",
    "productionListenerRule": "arn:rule/prod",
    "roleArn": "arn:aws:iam::123456789012:role/ecs-lb",
}


def test_production_steps_per_strategy() -> None:
    assert production_steps({"strategy": "BLUE_GREEN"}) == [(100.0, 0.0)]
    assert production_steps({"strategy": "CANARY"}) == [(5.0, 10.0), (100.0, 0.0)]
    linear = production_steps({"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 30.0}})
    assert linear == [(30.0, 6.0), (60.0, 6.0), (90.0, 6.0), (100.0, 0.0)]
    thirds = production_steps({"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 33.3}})
    assert [w for w, _ in thirds] == [33.3, 66.6, 99.9, 100.0]


def test_plan_adds_a_pre_shift_phase_only_when_a_hook_needs_it() -> None:
    hook = {"targetType": "PAUSE", "lifecycleStages": ["PRE_PRODUCTION_TRAFFIC_SHIFT"]}
    config: dict[str, Any] = {"strategy": "CANARY"}
    without = [p.hook_stage for p in plan(config)]
    with_hook = [p.hook_stage for p in plan({**config, "lifecycleHooks": [hook]})]
    assert without.count("PRE_PRODUCTION_TRAFFIC_SHIFT") == 0
    assert with_hook.count("PRE_PRODUCTION_TRAFFIC_SHIFT") == 2  # before each of the 2 steps
    assert len(with_hook) == len(without) + 2


def test_validation_accepts_a_complete_blue_green_service() -> None:
    hooks = [
        {"targetType": "PAUSE", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"]},
        {
            "targetType": "AWS_LAMBDA",
            "hookTargetArn": "arn:aws:lambda:us-east-1:1:function:f",
            "lifecycleStages": ["PRODUCTION_TRAFFIC_SHIFT"],
        },
    ]
    config = {"strategy": "LINEAR", "bakeTimeInMinutes": 5, "lifecycleHooks": hooks}
    validate_deployment(config, [{**LB, "advancedConfiguration": ADVANCED}])
    validate_deployment({"strategy": "BLUE_GREEN"}, None)  # no load balancer: nothing to shift


@pytest.mark.parametrize(
    ("config", "balancers", "message"),
    [
        ({"strategy": "BLUE_GREEN"}, [LB], r"loadBalancers\[0\]\.advancedConfiguration must be"),
        (
            {"strategy": "CANARY"},
            [{**LB, "advancedConfiguration": {"productionListenerRule": "arn:rule"}}],
            "alternateTargetGroupArn must be specified",
        ),
        (
            {"lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["PRE_SCALE_UP"]}]},
            None,
            "only supported with the BLUE_GREEN, LINEAR and CANARY",
        ),
        (
            {
                "strategy": "BLUE_GREEN",
                "lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["BAKE_TIME"]}],
            },
            None,
            "'BAKE_TIME' is not a valid lifecycle stage for a hook",
        ),
        (
            {
                "strategy": "LINEAR",
                "lifecycleHooks": [
                    {"targetType": "PAUSE", "lifecycleStages": ["PRODUCTION_TRAFFIC_SHIFT"]}
                ],
            },
            None,
            "PAUSE hooks cannot be configured at the PRODUCTION_TRAFFIC_SHIFT stage",
        ),
        (
            {
                "strategy": "BLUE_GREEN",
                "lifecycleHooks": [
                    {"targetType": "AWS_LAMBDA", "lifecycleStages": ["PRE_SCALE_UP"]}
                ],
            },
            None,
            "hookTargetArn must be specified",
        ),
        (
            {"strategy": "BLUE_GREEN", "lifecycleHooks": [{"targetType": "PAUSE"}]},
            None,
            "lifecycleStages must be specified",
        ),
        (
            {"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 1.0}},
            None,
            "stepPercent must be between 3.0 and 100.0",
        ),
        (
            {"strategy": "BLUE_GREEN", "canaryConfiguration": {"canaryPercent": 5.0}},
            None,
            "canaryConfiguration is only valid with the CANARY strategy",
        ),
        ({"strategy": "SIDEWAYS"}, None, "Invalid deployment strategy 'SIDEWAYS'"),
        (
            {
                "strategy": "BLUE_GREEN",
                "lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["PRE_SCALE_UP"]}]
                * 11,
            },
            None,
            "At most 10 lifecycle hooks of type PAUSE",
        ),
    ],
)
def test_validation_refuses(
    config: dict[str, Any], balancers: list[dict[str, Any]] | None, message: str
) -> None:
    with pytest.raises(SimulationError, match=message) as error:
        validate_deployment(config, balancers)
    assert error.value.code == "InvalidParameterException"


def test_minute_seconds_and_fail_hooks_knobs() -> None:
    settings = SimSettings.create(minute_seconds=2, fail_hooks=["bad-check"])
    assert settings.to_json()["minute_seconds"] == 2.0
    assert settings.failing_hook("arn:aws:lambda:us-east-1:1:function:bad-check") == "bad-check"
    assert settings.failing_hook("arn:aws:lambda:us-east-1:1:function:good") is None
    assert settings.failing_hook(None) is None
    updated = settings.updated_from_json({"minute_seconds": 0.5, "fail_hooks": []})
    assert (updated.minute_seconds, updated.fail_hooks) == (0.5, ())
    assert settings.updated_from_json(updated.to_json()) == updated
    for bad in ({"minute_seconds": 0}, {"minute_seconds": "1"}, {"fail_hooks": "x"}):
        with pytest.raises(SettingsError):
            settings.updated_from_json(bad)
    with pytest.raises(SettingsError, match="non-empty"):
        SimSettings.create(fail_hooks=[""])
