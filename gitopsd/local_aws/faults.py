"""Injected API failures: throttling, server errors, dropped connections and latency.

Real AWS throttles (``ThrottlingException``), fails now and then (HTTP 5xx),
drops connections and is sometimes slow; gitopsd must retry with backoff and,
when a failure lasts, fail the one app with a clear, temporary error. Tests arm
*fault rules* through ``POST /_gitopsd/faults``; several may be armed at once.
A rule (every key but ``operation`` optional)::

    {"operation": "RegisterTaskDefinition",   # or "*" (every AWS operation), or a list
     "error": "ServerException",              # see FAULT_STATUS, "drop", or null
     "count": 3,                              # at most 3 injections (default 1, see below)
     "rate": 0.3, "seed": 42,                 # each matching call fires with p = 0.3
     "phase": "after",                        # "before" (default) or "after" moto ran
     "latency": 0.5,                          # delay the answer by 0.5 s (at most 60)
     "duration": 10,                          # the rule expires 10 s (wall time) after arming
     "bucket": {"burst": 20, "refill": 1.0}}  # AWS-like throttling (below)

- ``phase: "before"``: the call never reaches moto; the error answer is returned.
  ``phase: "after"``: moto processes the call (a write takes effect), then its
  answer is thrown away and replaced by the error.
- ``error: "drop"``: no answer at all, the TCP connection is shut down (the
  client sees the connection closed or reset). ``error: null`` (or no ``error``
  when ``latency`` is given): the call succeeds, only ``latency`` later.
  Without ``error`` and without ``latency`` the error is ``ThrottlingException``
  (the original count-based form).
- ``rate`` fires with that probability, drawn from a ``random.Random(seed)``
  owned by the rule, so a run replays exactly when re-armed with the same seed
  (no ``seed``: one is chosen and shown by ``GET``). ``count`` caps the number of
  injections; it defaults to 1 unless ``rate`` or ``duration`` is given (then to
  no cap); ``"count": null`` means no cap.
- A call goes through the active rules in the order they were armed: each
  rule whose operation matches counts it (``matched``) and, for a ``rate``
  rule, draws; the first rule that fires decides what happens and the rules
  after it do not see the call (one injection per call at most). A rule that
  used up its ``count`` or outlived its ``duration`` stays listed, inactive.

- ``bucket``: throttling as AWS does it, a token bucket per rule (one rule per
  operation class: ``"operation": ["CreateService", "UpdateService"]`` share
  one bucket). It starts full with ``burst`` tokens, refills ``refill`` tokens a
  second (wall time), and each matching call takes a token; the rule fires only
  for a call that finds the bucket empty. ``count`` defaults to no cap.

``POST`` takes one rule or ``{"rules": [...]}`` (all validated before any is
armed) and answers the snapshot: ``{"faults": [rule, ...], "injected": [...]}``
with per-rule ``matched`` and ``injected`` counts, and the log of every
injection (``{"operation", "error", "phase", "latency", "rule"}``) in order.
``DELETE`` and ``/_gitopsd/reset`` clear rules and log.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

#: Error codes a fault may use, with the HTTP status AWS answers them with.
FAULT_STATUS: dict[str, int] = {
    "ThrottlingException": 400,
    "ServerException": 500,
    "ServiceUnavailableException": 503,
    "AccessDeniedException": 400,
    # DynamoDB's (the state store's table): throttled, and a server fault.
    "ProvisionedThroughputExceededException": 400,
    "InternalServerError": 500,
}
FAULT_MESSAGE: dict[str, str] = {
    "ThrottlingException": "Rate exceeded",
    "ServerException": "Service encountered an internal error (injected).",
    "ServiceUnavailableException": "Service unavailable (injected).",
    "AccessDeniedException": "User is not authorized to perform this action (injected).",
    "ProvisionedThroughputExceededException": "The level of configured provisioned throughput "
    "for the table was exceeded (injected).",
    "InternalServerError": "Internal server error (injected).",
}
#: ``error`` value that closes the connection instead of answering.
DROP = "drop"
#: ``operation`` value that matches every AWS operation.
ANY_OPERATION = "*"
PHASE_BEFORE = "before"
PHASE_AFTER = "after"
PHASES = (PHASE_BEFORE, PHASE_AFTER)
#: Longest ``latency`` a rule may ask for, in seconds.
MAX_LATENCY = 60.0
#: The injection log keeps this many entries (the oldest go first).
MAX_LOG = 10_000
RULE_KEYS = frozenset(
    {"operation", "error", "count", "rate", "seed", "phase", "latency", "duration", "bucket"}
)


@dataclass(frozen=True)
class Injection:
    """What one call gets from the rule that fired."""

    operation: str
    error: str | None
    phase: str
    latency: float
    rule: int

    @property
    def drop(self) -> bool:
        """Close the connection without an answer."""
        return self.error == DROP

    @property
    def status(self) -> int:
        """The HTTP status of the error answer."""
        return FAULT_STATUS[self.error or ""]

    def body(self, *, json_protocol: bool = True) -> bytes:
        """The AWS error body: JSON for JSON-protocol services (ECS, DynamoDB), else the
        query protocol's XML (STS, SNS, SQS), so every client parses it as that error."""
        error = self.error or ""
        if json_protocol:
            return json.dumps({"__type": error, "message": FAULT_MESSAGE[error]}).encode()
        side = "Receiver" if self.status >= 500 else "Sender"
        return (
            f"<ErrorResponse><Error><Type>{side}</Type><Code>{error}</Code>"
            f"<Message>{escape(FAULT_MESSAGE[error])}</Message></Error>"
            "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
        ).encode()

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "error": self.error,
            "phase": self.phase,
            "latency": self.latency or None,
            "rule": self.rule,
        }


@dataclass
class FaultRule:
    """One armed rule and what it did so far."""

    id: int
    operation: str | list[str]
    error: str | None
    phase: str
    count: int | None
    rate: float | None
    seed: int | None
    latency: float
    duration: float | None
    armed_at: float
    #: ``(burst, refill per second)`` of an AWS-like token bucket, or None.
    bucket: tuple[float, float] | None = None
    tokens: float = 0.0
    refilled_at: float = 0.0
    matched: int = 0
    injected: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def matches(self, operation: str) -> bool:
        if self.operation == ANY_OPERATION:
            return True
        if isinstance(self.operation, str):
            return self.operation == operation
        return operation in self.operation

    def take_token(self, now: float) -> bool:
        """Bucket rules: take a token if there is one (then the call passes)."""
        if self.bucket is None:
            return False
        burst, refill = self.bucket
        self.tokens = min(burst, self.tokens + max(0.0, now - self.refilled_at) * refill)
        self.refilled_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def active(self, now: float) -> bool:
        if self.count is not None and self.injected >= self.count:
            return False
        return self.duration is None or now < self.armed_at + self.duration

    def to_json(self, now: float) -> dict[str, Any]:
        expires_in = None
        if self.duration is not None:
            expires_in = max(0.0, self.armed_at + self.duration - now)
        return {
            "id": self.id,
            "operation": self.operation,
            "error": self.error,
            "phase": self.phase,
            "count": self.count,
            "remaining": None if self.count is None else max(0, self.count - self.injected),
            "rate": self.rate,
            "seed": self.seed,
            "latency": self.latency or None,
            "duration": self.duration,
            "bucket": (
                None if self.bucket is None else {"burst": self.bucket[0], "refill": self.bucket[1]}
            ),
            "expires_in": expires_in,
            "active": self.active(now),
            "matched": self.matched,
            "injected": self.injected,
        }


class Faults:
    """Armed fault rules and the log of what they injected; thread-safe."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._now = monotonic
        self._rules: list[FaultRule] = []
        self._log: list[Injection] = []
        self._next_id = 1

    def arm(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Arm one rule, or every rule of ``{"rules": [...]}``; returns the snapshot."""
        if set(body) == {"rules"}:
            rules = body["rules"]
            if not isinstance(rules, list) or not rules:
                raise ValueError("'rules' must be a non-empty list of fault rules")
            parsed = [_parse_rule(rule, f"rules[{i}]: ") for i, rule in enumerate(rules)]
        else:
            parsed = [_parse_rule(body, "")]
        with self._lock:
            now = self._now()
            for spec in parsed:
                seed = spec["seed"]
                if spec["rate"] is not None and seed is None:
                    seed = random.SystemRandom().randrange(2**32)
                self._rules.append(
                    FaultRule(
                        id=self._next_id,
                        operation=spec["operation"],
                        error=spec["error"],
                        phase=spec["phase"],
                        count=spec["count"],
                        rate=spec["rate"],
                        seed=seed,
                        latency=spec["latency"],
                        duration=spec["duration"],
                        armed_at=now,
                        bucket=spec["bucket"],
                        tokens=spec["bucket"][0] if spec["bucket"] else 0.0,
                        refilled_at=now,
                        rng=random.Random(seed),
                    )
                )
                self._next_id += 1
        return self.snapshot()

    def match(self, operation: str) -> Injection | None:
        """What this call of ``operation`` gets, if a rule fires (counted and logged)."""
        with self._lock:
            now = self._now()
            for rule in self._rules:
                if not rule.matches(operation) or not rule.active(now):
                    continue
                rule.matched += 1
                if rule.rate is not None and rule.rng.random() >= rule.rate:
                    continue
                if rule.take_token(now):
                    continue
                rule.injected += 1
                injection = Injection(operation, rule.error, rule.phase, rule.latency, rule.id)
                self._log.append(injection)
                del self._log[:-MAX_LOG]
                return injection
            return None

    def clear(self) -> None:
        """Disarm every rule and forget the injection log."""
        with self._lock:
            self._rules.clear()
            self._log.clear()

    def snapshot(self) -> dict[str, Any]:
        """``{"faults": [rule, ...], "injected": [injection, ...]}``."""
        with self._lock:
            now = self._now()
            return {
                "faults": [rule.to_json(now) for rule in self._rules],
                "injected": [injection.to_json() for injection in self._log],
            }


def _parse_rule(rule: Any, where: str) -> dict[str, Any]:
    """Validate one rule; a ValueError names the bad key (after ``where``)."""
    if not isinstance(rule, Mapping):
        raise ValueError(f"{where}a fault rule must be a JSON object")
    unknown = sorted(set(rule) - RULE_KEYS)
    if unknown:
        raise ValueError(f"{where}unknown key(s) {unknown}; known: {sorted(RULE_KEYS)}")
    try:
        return _parse_fields(rule)
    except ValueError as exc:
        raise ValueError(f"{where}{exc}") from None


def _parse_fields(rule: Mapping[str, Any]) -> dict[str, Any]:
    operation = _operation(rule.get("operation"))
    latency = _number(rule, "latency", 0.0)
    if latency > MAX_LATENCY:
        raise ValueError(f"'latency' must be at most {MAX_LATENCY:g} seconds, got {latency!r}")
    default_error = None if latency else "ThrottlingException"  # the count-based form
    error = rule.get("error", default_error)
    if error is not None and error != DROP and error not in FAULT_STATUS:
        raise ValueError(
            f"'error' must be one of {sorted(FAULT_STATUS)}, {DROP!r} or null, got {error!r}"
        )
    if error is None and not latency:
        raise ValueError("a fault rule needs an 'error' or a 'latency'")
    phase = rule.get("phase", PHASE_BEFORE)
    if phase not in PHASES:
        raise ValueError(f"'phase' must be one of {list(PHASES)}, got {phase!r}")
    rate = rule.get("rate")
    if rate is not None:
        if not _is_number(rate) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"'rate' must be a number from 0 to 1, got {rate!r}")
        rate = float(rate)
    seed = rule.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"'seed' must be an integer, got {seed!r}")
    if seed is not None and rate is None:
        raise ValueError("'seed' needs a 'rate'")
    duration = rule.get("duration")
    if duration is not None:
        if not _is_number(duration) or duration <= 0:
            raise ValueError(f"'duration' must be a number of seconds > 0, got {duration!r}")
        duration = float(duration)
    if "count" in rule:
        count = rule["count"]
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            raise ValueError(f"'count' must be an integer >= 1 or null, got {count!r}")
        if count is not None and count < 1:
            raise ValueError(f"'count' must be an integer >= 1 or null, got {count!r}")
    else:
        count = None if rate is not None or duration is not None or "bucket" in rule else 1
    return {
        "operation": operation,
        "error": error,
        "phase": phase,
        "count": count,
        "rate": rate,
        "seed": seed,
        "latency": latency,
        "duration": duration,
        "bucket": _bucket(rule.get("bucket")),
    }


def _bucket(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    message = (
        '\'bucket\' must be {"burst": N >= 1, "refill": calls a second > 0} '
        f"(AWS-like throttling), got {value!r}"
    )
    if not isinstance(value, Mapping) or set(value) != {"burst", "refill"}:
        raise ValueError(message)
    burst, refill = value["burst"], value["refill"]
    if not (_is_number(burst) and _is_number(refill)) or burst < 1 or refill <= 0:
        raise ValueError(message)
    return float(burst), float(refill)


def _operation(value: Any) -> str | list[str]:
    message = (
        "'operation' must name an API operation (e.g. 'DescribeServices'), "
        f"'{ANY_OPERATION}' for every operation, or a non-empty list of names; got {value!r}"
    )
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        names: Sequence[str] = value
        return ANY_OPERATION if ANY_OPERATION in names else list(dict.fromkeys(names))
    raise ValueError(message)


def _is_number(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(float(value))
    )


def _number(rule: Mapping[str, Any], key: str, default: float) -> float:
    value = rule.get(key)
    if value is None:
        return default
    if not _is_number(value) or value < 0:
        raise ValueError(f"'{key}' must be a number of seconds >= 0, got {value!r}")
    return float(value)
