"""A service's ``deploymentConfiguration``: the defaults ECS fills in and the rules it implies.

ECS returns a complete ``deploymentConfiguration`` even when a request sent a
partial one or none (maximumPercent 200, minimumHealthyPercent 100, the circuit
breaker off; 100/0 for DAEMON services), and the rolling update obeys it:

- at most ``floor(desired * maximumPercent / 100)`` tasks run or start at once;
- at least ``ceil(desired * minimumHealthyPercent / 100)`` tasks keep running;
- with ``deploymentCircuitBreaker.enable`` a deployment is FAILED once its failed
  task count reaches the threshold: by default ``ceil(0.5 * desiredCount)``,
  at least 3 and at most 200 (``thresholdConfiguration`` can change the formula:
  ``COUNT`` uses the value itself, ``UNBOUNDED_PERCENT`` drops the bounds).

Pure module: plain dicts in, frozen values out.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MIN_BREAKER_THRESHOLD = 3
MAX_BREAKER_THRESHOLD = 200


def ceil_div(numerator: int, denominator: int) -> int:
    """``ceil(numerator / denominator)`` in integers."""
    return -(-numerator // denominator)


def normalize_deployment_configuration(
    configuration: Mapping[str, Any] | None, scheduling_strategy: str = "REPLICA"
) -> dict[str, Any]:
    """The configuration as ECS reports it: each missing default filled on its own."""
    result: dict[str, Any] = copy.deepcopy(dict(configuration or {}))
    daemon = scheduling_strategy == "DAEMON"
    if result.get("maximumPercent") is None:
        result["maximumPercent"] = 100 if daemon else 200
    if result.get("minimumHealthyPercent") is None:
        result["minimumHealthyPercent"] = 0 if daemon else 100
    breaker = dict(result.get("deploymentCircuitBreaker") or {})
    breaker.setdefault("enable", False)
    breaker.setdefault("rollback", False)
    result["deploymentCircuitBreaker"] = breaker
    return result


@dataclass(frozen=True)
class DeploymentPolicy:
    """The parts of ``deploymentConfiguration`` the rolling-update simulation obeys."""

    maximum_percent: int = 200
    minimum_healthy_percent: int = 100
    circuit_breaker: bool = False
    rollback: bool = False
    reset_on_healthy_task: bool = True
    threshold_type: str = "BOUNDED_PERCENT"
    threshold_value: int = 50

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, Any] | None) -> DeploymentPolicy:
        """Read a (normalized or partial) ``deploymentConfiguration`` dict."""
        cfg = normalize_deployment_configuration(configuration)
        breaker = cfg["deploymentCircuitBreaker"]
        threshold = breaker.get("thresholdConfiguration") or {}
        reset = breaker.get("resetOnHealthyTask")
        return cls(
            maximum_percent=int(cfg["maximumPercent"]),
            minimum_healthy_percent=int(cfg["minimumHealthyPercent"]),
            circuit_breaker=bool(breaker.get("enable")),
            rollback=bool(breaker.get("rollback")),
            reset_on_healthy_task=True if reset is None else bool(reset),
            threshold_type=str(threshold.get("type") or "BOUNDED_PERCENT"),
            threshold_value=int(threshold.get("value", 50)),
        )

    def max_in_flight(self, desired_count: int) -> int:
        """Upper limit of running plus starting tasks during a deployment."""
        return desired_count * self.maximum_percent // 100

    def min_healthy(self, desired_count: int) -> int:
        """Lower limit of running tasks during a deployment."""
        return ceil_div(desired_count * self.minimum_healthy_percent, 100)

    def failure_threshold(self, desired_count: int) -> int:
        """Failed tasks after which the circuit breaker fails the deployment."""
        return failure_threshold(desired_count, self.threshold_type, self.threshold_value)


def failure_threshold(
    desired_count: int, threshold_type: str = "BOUNDED_PERCENT", value: int = 50
) -> int:
    """The circuit breaker's threshold for a service of ``desired_count`` tasks."""
    if threshold_type == "COUNT":
        return max(1, value)
    raw = ceil_div(max(desired_count, 0) * value, 100)
    if threshold_type == "UNBOUNDED_PERCENT":
        return max(1, raw)
    return min(MAX_BREAKER_THRESHOLD, max(MIN_BREAKER_THRESHOLD, raw))
