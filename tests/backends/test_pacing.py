"""The write pacer: bursts up to the bucket, then the sustained rate; driven by a fake clock."""

from __future__ import annotations

import pytest

from gitopsd.backends.ecs.pacing import WRITE_RATES, Pacer, Rate, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


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


def test_only_writes_are_paced() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    assert all(pacer.reserve("DescribeServices") == 0.0 for _ in range(100))
    burst = WRITE_RATES["RegisterTaskDefinition"].burst
    delays = [pacer.reserve("RegisterTaskDefinition") for _ in range(burst + 1)]
    assert delays[:burst] == [0.0] * burst
    assert delays[burst] > 0
