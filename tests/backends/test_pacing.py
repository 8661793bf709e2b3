"""The write pacer: AWS-like buckets per operation class (burst, then refill), adapting to
throttles and recovering, shared by the process; all driven by a fake clock (no sleeps)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gitopsd.backends.ecs import pacing
from gitopsd.backends.ecs.client import EcsClient
from gitopsd.backends.ecs.pacing import (
    AWS_RATES,
    MIN_SHARE,
    RECOVERY_SECONDS,
    Pacer,
    Rate,
    TokenBucket,
    Unpaced,
    shared_pacer,
)
from gitopsd.config import AwsConfig


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def fresh_pacers() -> Iterator[None]:
    pacing.reset_shared()
    yield
    pacing.reset_shared()


def test_burst_then_sustained_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(Rate(per_second=2.0, burst=3), clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    # Reservations queue up behind each other at the sustained rate.
    assert bucket.reserve() == pytest.approx(0.5)
    assert bucket.reserve() == pytest.approx(1.0)


def test_tokens_refill_with_time_up_to_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(Rate(per_second=1.0, burst=2), clock)
    bucket.reserve()
    bucket.reserve()
    clock.now += 1.0
    assert bucket.reserve() == 0.0
    clock.now += 60.0  # a long quiet spell refills no more than the burst
    assert [bucket.reserve() for _ in range(2)] == [0.0, 0.0]
    assert bucket.reserve() == pytest.approx(1.0)


def test_only_writes_are_paced_and_classes_share_a_bucket() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    assert all(pacer.reserve("DescribeServices") == 0.0 for _ in range(1000))
    burst = AWS_RATES["task-definition-write"].burst
    # Registrations and deregistrations draw from one bucket, as on AWS's side.
    delays = [pacer.reserve("RegisterTaskDefinition") for _ in range(burst - 1)]
    delays.append(pacer.reserve("DeregisterTaskDefinition"))
    assert delays == [0.0] * burst
    assert pacer.reserve("RegisterTaskDefinition") == pytest.approx(1.0)
    # ... and not from the service writes' bucket.
    assert pacer.reserve("UpdateService") == 0.0


def test_a_rollout_of_100_services_takes_what_the_aws_buckets_allow() -> None:
    """100 RegisterTaskDefinition + 100 UpdateService at once: the last of each waits
    exactly the token-bucket floor (burst 20, then the refill), nothing more."""
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    register = [pacer.reserve("RegisterTaskDefinition") for _ in range(100)]
    update = [pacer.reserve("UpdateService") for _ in range(100)]
    td, svc = AWS_RATES["task-definition-write"], AWS_RATES["service-write"]
    assert register[: td.burst] == [0.0] * td.burst
    assert max(register) == pytest.approx((100 - td.burst) / td.per_second)  # 80 s
    assert max(update) == pytest.approx((100 - svc.burst) / svc.per_second)  # 40 s
    assert max(register) < 100 / 0.5  # the old fixed half-rate pacing: 190 s


def test_a_throttle_halves_the_rate_and_drops_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(Rate(per_second=2.0, burst=10), clock)
    assert bucket.reserve() == 0.0  # nine tokens left
    assert bucket.throttled()
    assert bucket.per_second == pytest.approx(1.0)
    # No burst on top of a throttled endpoint: the next call waits for a fresh token.
    assert bucket.reserve() == pytest.approx(1.0)
    assert bucket.reserve() == pytest.approx(2.0)


def test_calls_refused_together_cut_the_rate_once() -> None:
    clock = FakeClock()
    bucket = TokenBucket(Rate(per_second=2.0, burst=10), clock)
    assert [bucket.throttled() for _ in range(8)] == [True] + [False] * 7
    assert bucket.per_second == pytest.approx(1.0)
    clock.now += 1.0  # one refill interval later a new throttle counts again
    assert bucket.throttled()
    # Halved from where it had recovered to in that second.
    assert bucket.per_second == pytest.approx((1.0 + 2.0 / RECOVERY_SECONDS) / 2)


def test_the_rate_recovers_linearly_to_nominal_and_never_drops_below_the_floor() -> None:
    clock = FakeClock()
    rate = Rate(per_second=1.0, burst=20)
    bucket = TokenBucket(rate, clock)
    for _ in range(20):  # a storm: throttled at every chance, once per refill interval
        assert bucket.throttled()
        floor = bucket.per_second
        clock.now += 1.0 / floor
    clock.now -= 1.0 / floor
    assert rate.per_second * MIN_SHARE <= floor < rate.per_second * 0.3
    clock.now += RECOVERY_SECONDS / 2
    assert bucket.per_second == pytest.approx(floor + rate.per_second / 2)
    clock.now += RECOVERY_SECONDS
    assert bucket.per_second == rate.per_second
    # Calm long enough: the burst is back too.
    clock.now += rate.burst / rate.per_second
    assert [bucket.reserve() for _ in range(rate.burst)] == [0.0] * rate.burst


def test_the_pacer_adapts_only_the_throttled_class() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    pacer.throttled("UpdateService")
    pacer.throttled("DescribeServices")  # not paced: nothing to adapt
    service = pacer.bucket("CreateService")
    registration = pacer.bucket("RegisterTaskDefinition")
    assert service is not None
    assert registration is not None
    assert service.per_second == pytest.approx(AWS_RATES["service-write"].per_second / 2)
    assert registration.per_second == AWS_RATES["task-definition-write"].per_second


def test_one_pacer_per_endpoint_is_shared_by_every_client_of_the_process() -> None:
    aws = AwsConfig(region="eu-west-1", endpoint_url="http://127.0.0.1:4566")
    web, worker = EcsClient(aws), EcsClient(aws)  # e.g. two apps, or two passes
    assert web.pacer is worker.pacer
    burst = AWS_RATES["task-definition-write"].burst
    for _ in range(burst):
        assert web.pacer.reserve("RegisterTaskDefinition") == 0.0
    # The other app finds the bucket its neighbour emptied.
    assert worker.pacer.reserve("RegisterTaskDefinition") > 0.0
    other_region = EcsClient(aws, "us-east-1")
    assert other_region.pacer is not web.pacer
    assert other_region.pacer.reserve("RegisterTaskDefinition") == 0.0


def test_pacing_off_and_a_share_of_the_buckets() -> None:
    off = EcsClient(AwsConfig(region="eu-west-1", pacing="off"))
    assert isinstance(off.pacer, Unpaced)
    assert all(off.pacer.reserve("RegisterTaskDefinition") == 0.0 for _ in range(500))
    half = shared_pacer(("", "eu-west-1", ""), share=0.5)
    bucket = half.bucket("RegisterTaskDefinition")
    assert bucket is not None
    assert bucket.rate == Rate(per_second=0.5, burst=10)
    assert half is not shared_pacer(("", "eu-west-1", ""))
