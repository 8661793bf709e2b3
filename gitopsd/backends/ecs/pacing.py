"""Pace writes per operation class as AWS's own token buckets do, and back off when throttled.

ECS throttles each operation class with a token bucket per account and region,
shared with every other tool and the console (ecs-facts.md section 3): a bucket
holds up to ``burst`` tokens, each call takes one, and tokens come back at the
refill rate (RegisterTaskDefinition: a burst of 20, then about one a second).
gitopsd keeps a bucket of its own per class, modelled on AWS's, so a rollout of
many services spends the burst at once and then goes exactly as fast as the
refill allows, instead of being refused and retried.

Other tools spend the same account's tokens, so the endpoint may still throttle.
Each bucket then adapts, AIMD-style as TCP does: a ``ThrottlingException`` halves
its refill rate (and empties it: no burst on top of a throttled endpoint), once per
refill interval however many calls in flight were refused together; the rate then
grows back linearly to the nominal rate within :data:`RECOVERY_SECONDS` of calm.

One :class:`Pacer` per account endpoint is shared by the whole process
(:func:`shared_pacer`): every app, every pass and every region client of one
endpoint draws from the same buckets, as on AWS's side. Reads are bounded by the
client's concurrency limit instead (``[aws].max_concurrency``); ``[aws].pacing =
"off"`` turns the buckets off for an endpoint that does not throttle (the local one).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Rate:
    """Sustained calls per second (the refill), and how many may go at once after calm."""

    per_second: float
    burst: int

    def scaled(self, share: float) -> Rate:
        """This rate cut to ``share`` of it (at least one token of burst)."""
        return Rate(per_second=self.per_second * share, burst=max(1, round(self.burst * share)))


#: AWS's token buckets per ECS write class (ecs-facts.md section 3; the ECS API
#: reference's "Request throttling"): the bucket size is the burst, the refill the rate.
AWS_RATES: dict[str, Rate] = {
    "task-definition-write": Rate(per_second=1.0, burst=20),
    "service-write": Rate(per_second=2.0, burst=20),
    "tag-write": Rate(per_second=5.0, burst=20),
}

#: ECS operation -> the class whose bucket it draws from; other operations are not paced.
OPERATION_CLASSES: dict[str, str] = {
    "RegisterTaskDefinition": "task-definition-write",
    "DeregisterTaskDefinition": "task-definition-write",
    "CreateService": "service-write",
    "UpdateService": "service-write",
    "DeleteService": "service-write",
    "TagResource": "tag-write",
    "UntagResource": "tag-write",
}

#: A throttle multiplies the refill rate by this (the multiplicative decrease).
DECREASE = 0.5
#: The refill rate never drops below this share of the nominal rate.
MIN_SHARE = 1 / 16
#: Seconds of calm in which a throttled bucket grows back to its nominal rate (linear).
RECOVERY_SECONDS = 30.0


class TokenBucket:
    """A token bucket that hands out reservations (how long to wait before calling), and
    adapts its refill rate to the throttles the endpoint answers with."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._tokens = float(rate.burst)
        self._updated = clock()
        #: The refill rate right after the last decrease, and when it was made.
        self._floor_rate = rate.per_second
        self._throttled_at: float | None = None

    @property
    def per_second(self) -> float:
        """The refill rate now: nominal, or recovering linearly after a throttle."""
        if self._throttled_at is None:
            return self.rate.per_second
        calm = max(0.0, self._clock() - self._throttled_at)
        nominal = self.rate.per_second
        return min(nominal, self._floor_rate + nominal * calm / RECOVERY_SECONDS)

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        self._tokens = min(float(self.rate.burst), self._tokens + elapsed * self.per_second)

    def reserve(self) -> float:
        """Take one token; the seconds the caller must wait before using it (0 if none)."""
        self._refill()
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.per_second

    def throttled(self) -> bool:
        """The endpoint refused a call: halve the refill rate and drop the burst.

        Calls refused together (in flight at once) count as one throttle: the rate is
        cut at most once per refill interval. Returns whether it was cut.
        """
        now = self._clock()
        rate = self.per_second
        if self._throttled_at is not None and now - self._throttled_at < 1.0 / rate:
            return False
        self._refill()
        self._floor_rate = max(self.rate.per_second * MIN_SHARE, rate * DECREASE)
        self._throttled_at = now
        self._tokens = min(self._tokens, 0.0)
        return True


class Pacer:
    """One bucket per paced operation class; other operations are not paced."""

    def __init__(
        self,
        rates: Mapping[str, Rate] | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        classes: Mapping[str, str] | None = None,
    ) -> None:
        self._classes = dict(OPERATION_CLASSES if classes is None else classes)
        self._buckets = {
            name: TokenBucket(rate, clock)
            for name, rate in (AWS_RATES if rates is None else rates).items()
        }
        self._lock = threading.Lock()  # one pacer may serve several event loops' threads

    def bucket(self, op: str) -> TokenBucket | None:
        """The bucket ``op`` draws from (None: not paced)."""
        return self._buckets.get(self._classes.get(op, ""))

    def reserve(self, op: str) -> float:
        """Take a token for one call of ``op``: the seconds to wait before sending it."""
        bucket = self.bucket(op)
        if bucket is None:
            return 0.0
        with self._lock:
            return bucket.reserve()

    def throttled(self, op: str) -> None:
        """The endpoint answered a call of ``op`` with a throttling error."""
        bucket = self.bucket(op)
        if bucket is None:
            return
        with self._lock:
            cut = bucket.throttled()
            rate = bucket.per_second
        if cut:
            log.info("aws.pacing_reduced", op=op, per_second=round(rate, 3))


class Unpaced(Pacer):
    """``[aws].pacing = "off"``: no bucket at all (throttles are still retried)."""

    def __init__(self) -> None:
        super().__init__(rates={})


_SHARED: dict[tuple[str, ...], Pacer] = {}
_SHARED_LOCK = threading.Lock()


def shared_pacer(endpoint: tuple[str, ...], *, mode: str = "aws", share: float = 1.0) -> Pacer:
    """The process's pacer for one endpoint (account profile, region, URL): created on
    first use with AWS's buckets cut to ``share``, then the same for every caller."""
    if mode == "off":
        return Unpaced()
    key = (*endpoint, mode, repr(share))
    with _SHARED_LOCK:
        pacer = _SHARED.get(key)
        if pacer is None:
            rates = {name: rate.scaled(share) for name, rate in AWS_RATES.items()}
            pacer = _SHARED[key] = Pacer(rates)
        return pacer


def reset_shared() -> None:
    """Forget every shared pacer (tests: each starts with full buckets)."""
    with _SHARED_LOCK:
        _SHARED.clear()
