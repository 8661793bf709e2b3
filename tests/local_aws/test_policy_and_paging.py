"""deploymentConfiguration defaults, the circuit breaker threshold, and List* paging."""

from __future__ import annotations

import pytest

from gitopsd.local_aws.paging import PagingError, decode_token, encode_token, page
from gitopsd.local_aws.policy import (
    DeploymentPolicy,
    failure_threshold,
    normalize_deployment_configuration,
)


@pytest.mark.parametrize(
    ("desired", "threshold"),
    [
        (0, 3),
        (1, 3),
        (5, 3),
        (6, 3),
        (7, 4),
        (10, 5),
        (11, 6),
        (399, 200),
        (400, 200),
        (10_000, 200),
    ],
)
def test_default_threshold_is_half_the_desired_count_bounded_3_to_200(
    desired: int, threshold: int
) -> None:
    assert failure_threshold(desired) == threshold


def test_threshold_configuration_types() -> None:
    assert failure_threshold(10, "COUNT", 2) == 2
    assert failure_threshold(2, "UNBOUNDED_PERCENT", 50) == 1
    assert failure_threshold(1000, "UNBOUNDED_PERCENT", 50) == 500
    assert failure_threshold(10, "BOUNDED_PERCENT", 100) == 10


def test_defaults_fill_each_missing_part() -> None:
    assert normalize_deployment_configuration(None) == {
        "maximumPercent": 200,
        "minimumHealthyPercent": 100,
        "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    }
    partial = normalize_deployment_configuration({"deploymentCircuitBreaker": {"enable": True}})
    assert partial["maximumPercent"] == 200
    assert partial["deploymentCircuitBreaker"] == {"enable": True, "rollback": False}
    daemon = normalize_deployment_configuration({}, "DAEMON")
    assert (daemon["maximumPercent"], daemon["minimumHealthyPercent"]) == (100, 0)


def test_policy_limits_round_like_ecs() -> None:
    policy = DeploymentPolicy.from_configuration(
        {"maximumPercent": 150, "minimumHealthyPercent": 50}
    )
    assert policy.max_in_flight(3) == 4  # floor(4.5)
    assert policy.min_healthy(3) == 2  # ceil(1.5)
    assert not policy.circuit_breaker


def test_paging_walks_every_item_once() -> None:
    items = [f"arn:{i}" for i in range(23)]
    seen: list[str] = []
    token: str | None = None
    while True:
        chunk, token = page(items, None, token, default=10)
        seen.extend(chunk)
        if token is None:
            break
    assert seen == items
    assert page(items, 100, None, default=10) == (items, None)
    assert decode_token(encode_token(7)) == 7


@pytest.mark.parametrize(("size", "token"), [(0, None), (101, None), (10, "garbage!")])
def test_paging_rejects_bad_input(size: int, token: str | None) -> None:
    with pytest.raises(PagingError):
        page(["a"], size, token, default=10)
