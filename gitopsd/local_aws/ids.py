"""Identifiers in ECS's formats for the simulated deployments.

Deployment ids (``ecs-svc/`` and 19 digits), task ids, event ids, hook ids and the last
part of service deployment and service revision ARNs. The server draws them
from a random generator; tests can seed it (or bring their own
:class:`IdSource`) to make them repeatable.
"""

from __future__ import annotations

import random
import string
from typing import Protocol


class IdSource(Protocol):
    """Where new identifiers come from (random in the server, counting in tests)."""

    def deployment_id(self) -> str:
        """A deployment id, ``ecs-svc/`` and 19 digits."""
        ...

    def task_id(self) -> str:
        """A task id, 32 hex digits."""
        ...

    def event_id(self) -> str:
        """A service event id (a UUID)."""
        ...

    def record_id(self) -> str:
        """The last part of a service deployment ARN."""
        ...

    def revision_id(self) -> str:
        """The last part of a service revision ARN."""
        ...

    def hook_id(self) -> str:
        """The id of one lifecycle hook run (``ContinueServiceDeployment`` names it)."""
        ...


class RandomIds:
    """Identifiers in ECS's formats from a (seedable) random generator."""

    _RECORD_ALPHABET = string.ascii_letters + string.digits + "_-"

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)

    def _digits(self, count: int) -> str:
        return str(self._random.randrange(10 ** (count - 1), 10**count))

    def deployment_id(self) -> str:
        """``ecs-svc/`` and 19 digits."""
        return f"ecs-svc/{self._digits(19)}"

    def task_id(self) -> str:
        """32 hex digits."""
        return f"{self._random.getrandbits(128):032x}"

    def event_id(self) -> str:
        """A UUID-shaped string."""
        h = f"{self._random.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def record_id(self) -> str:
        """22 URL-safe characters."""
        return "".join(self._random.choice(self._RECORD_ALPHABET) for _ in range(22))

    def revision_id(self) -> str:
        """19 digits."""
        return self._digits(19)

    def hook_id(self) -> str:
        """A UUID-shaped string."""
        return self.event_id()
