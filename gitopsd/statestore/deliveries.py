"""Webhook deliveries already seen, so a replayed or redelivered one is not processed twice.

GitHub names each delivery (``X-GitHub-Delivery``), GitLab each event
(``X-Gitlab-Event-UUID``), and gitopsd's own ``hmac`` kind takes an optional
``X-Delivery-Id``. The HTTP server asks :meth:`DeliveryLog.first_time` after a
signature checked out: each id is recorded in the state store with a
conditional write ("must not exist yet"), so it holds across restarts and
between two agents sharing a store. Ids older than the retention window
(``[http].delivery_retention``) no longer count and are removed now and then.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from gitopsd.statestore import DELIVERIES, StateConflict, StateStore, StateStoreError

log = structlog.get_logger(__name__)


class DeliveryLog:
    """The delivery ids seen within ``retention`` seconds, in a state store."""

    def __init__(
        self, store: StateStore, retention: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.retention = retention
        self.clock = clock
        self._purged_at = 0.0

    async def first_time(self, hook: str, delivery: str) -> bool:
        """Record ``delivery`` of webhook ``hook``; False when it was seen within the window.

        A store that cannot be reached answers True (the delivery only makes the agent
        fetch: processing it twice is harmless, missing it is not).
        """
        key = f"{hook}/{delivery}"
        now = self.clock()
        try:
            await self._purge(now)
            seen = await self.store.get(DELIVERIES, key)
            expired = seen is not None and _at(seen.value) + self.retention <= now
            if seen is not None and not expired:
                return False
            await self.store.put(
                DELIVERIES, key, {"at": now}, expect=seen.version if seen is not None else 0
            )
        except StateConflict:
            return False  # recorded a moment ago by another request or agent
        except StateStoreError as exc:
            log.warning("webhook.delivery_unrecorded", hook=hook, delivery=delivery, error=str(exc))
        return True

    async def _purge(self, now: float) -> None:
        """Remove expired ids, at most once per tenth of the window."""
        if now - self._purged_at < self.retention / 10:
            return
        self._purged_at = now
        for key, entry in (await self.store.list(DELIVERIES)).items():
            if _at(entry.value) + self.retention <= now:
                try:
                    await self.store.delete(DELIVERIES, key, expect=entry.version)
                except StateConflict:
                    continue


def _at(value: dict[str, object]) -> float:
    at = value.get("at")
    return float(at) if isinstance(at, int | float) else 0.0
