"""Injected API failures: throttling and server errors on demand.

Real AWS throttles (``ThrottlingException``) and fails now and then (HTTP 5xx);
gitopsd must retry those with backoff and, when they last, fail the one app
with a clear, temporary error. Tests arm a fault for one operation and a number
of calls through ``POST /_gitopsd/faults``; each matching call then gets the
AWS JSON error instead of reaching moto, until the count is used up.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Error codes a fault may use, with the HTTP status AWS answers them with.
FAULT_STATUS: dict[str, int] = {
    "ThrottlingException": 400,
    "ServerException": 500,
    "ServiceUnavailableException": 503,
    "AccessDeniedException": 400,
}


@dataclass
class Fault:
    operation: str
    error: str
    remaining: int

    @property
    def status(self) -> int:
        return FAULT_STATUS[self.error]

    def body(self) -> bytes:
        message = {
            "ThrottlingException": "Rate exceeded",
            "ServerException": "Service encountered an internal error (injected).",
            "ServiceUnavailableException": "Service unavailable (injected).",
            "AccessDeniedException": "User is not authorized to perform this action (injected).",
        }[self.error]
        return json.dumps({"__type": self.error, "message": message}).encode()


class Faults:
    """Armed faults by operation name; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}

    def arm(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Arm ``{"operation": "RegisterTaskDefinition", "error": "...", "count": 3}``."""
        operation = body.get("operation")
        error = body.get("error", "ThrottlingException")
        count = body.get("count", 1)
        if not isinstance(operation, str) or not operation:
            raise ValueError("'operation' must name an API operation, e.g. 'DescribeServices'")
        if error not in FAULT_STATUS:
            raise ValueError(f"'error' must be one of {sorted(FAULT_STATUS)}, got {error!r}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"'count' must be an integer >= 1, got {count!r}")
        with self._lock:
            self._faults[operation] = Fault(operation, error, count)
        return self.snapshot()

    def take(self, operation: str) -> Fault | None:
        """The fault for this call, if one is armed (and count it used)."""
        with self._lock:
            fault = self._faults.get(operation)
            if fault is None:
                return None
            fault.remaining -= 1
            if fault.remaining <= 0:
                del self._faults[operation]
            return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "faults": [
                    {"operation": f.operation, "error": f.error, "remaining": f.remaining}
                    for f in self._faults.values()
                ]
            }
