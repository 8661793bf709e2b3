"""Pace writes per operation, so gitopsd never bursts the account's API budget.

ECS throttles each operation with a token bucket per account and region,
shared with every other tool and the console (ecs-facts.md section 3):
RegisterTaskDefinition is the tightest write (a burst of about 20, about one
per second sustained). Retrying a ``ThrottlingException`` is the last resort;
gitopsd first spends at most about half of each bucket itself, with a token
bucket of its own per write operation. Reads are bounded by the client's
concurrency limit instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """Sustained calls per second, and how many may go at once after a quiet spell."""

    per_second: float
    burst: int


#: gitopsd's own budget per write operation: about half of what AWS allows.
WRITE_RATES: dict[str, Rate] = {
    "RegisterTaskDefinition": Rate(per_second=0.5, burst=10),
    "CreateService": Rate(per_second=1.0, burst=10),
    "UpdateService": Rate(per_second=1.0, burst=10),
    "TagResource": Rate(per_second=2.5, burst=10),
    "UntagResource": Rate(per_second=2.5, burst=10),
    # Prune: DeleteService is paced like the other service writes, and
    # DeregisterTaskDefinition like RegisterTaskDefinition (the tightest write).
    "DeleteService": Rate(per_second=1.0, burst=10),
    "DeregisterTaskDefinition": Rate(per_second=0.5, burst=10),
}


class TokenBucket:
    """A token bucket that hands out reservations: how long to wait before calling."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._tokens = float(rate.burst)
        self._updated = clock()

    def reserve(self) -> float:
        """Take one token; the seconds the caller must wait before using it (0 if none)."""
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        self._tokens = min(float(self.rate.burst), self._tokens + elapsed * self.rate.per_second)
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate.per_second


class Pacer:
    """One bucket per paced operation; other operations are not paced."""

    def __init__(
        self,
        rates: dict[str, Rate] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._buckets = {
            op: TokenBucket(rate, clock) for op, rate in (rates or WRITE_RATES).items()
        }

    def reserve(self, op: str) -> float:
        bucket = self._buckets.get(op)
        return bucket.reserve() if bucket is not None else 0.0
