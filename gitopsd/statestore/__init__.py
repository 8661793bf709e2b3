"""The state store: what the agent must remember across restarts, behind one small interface.

On Fargate the local disk is lost every time gitopsd's own task is replaced,
so whatever must survive a restart and cannot be derived from AWS or Git (a
suspended app, a commit whose rollout failed, drift-fight backoff, the last
applied commit, webhook deliveries seen, the alerts already sent) goes
through :class:`StateStore`: small JSON documents keyed by ``(namespace,
key)``, e.g. ``("agent", "web")``.

Every document carries a version. A write names the version it read
(``expect=0``: "must not exist yet") and fails with :class:`StateConflict`
when another writer got there first, so two writers never silently overwrite
each other; :func:`update` is the read-change-write loop most callers want.

Two implementations: :mod:`gitopsd.statestore.dirstore` (files under the
state directory; the default) and :mod:`gitopsd.statestore.dynamodb` (one
Amazon DynamoDB table). :func:`gitopsd.statestore.factory.open_store` picks
one from ``[state]``. The engine sees only this module.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import structlog

from gitopsd.errors import GitopsdError, PermanentError, TemporaryError

log = structlog.get_logger(__name__)

#: Namespaces gitopsd uses (one place, so docs/state.md and the code agree).
AGENT = "agent"  # per app: suspended, failed_commit, last_attempted, drift fights...
APPLIED = "applied"  # per app: the last commit applied (history-rewrite detection)
DELIVERIES = "webhook-deliveries"  # per "<hook>/<delivery id>": when it was seen
ALERTS = "alerts"  # per notifier channel: what was sent and when, recoveries owed
APPROVALS = "approvals"  # per app: the newest decisions at PAUSE hooks (who, when, why)
NAMESPACES = (AGENT, APPLIED, DELIVERIES, ALERTS, APPROVALS)

#: How many times :func:`update` re-reads and retries after a conflict, and the longest
#: random pause before a retry (so two writers in step do not keep colliding).
UPDATE_ATTEMPTS = 10
UPDATE_PAUSE = 0.2


class StateStoreError(GitopsdError):
    """Base of the state store's failures."""


class StateUnavailable(StateStoreError, TemporaryError):
    """The store could not be reached or was throttled, after retries; a later try may work."""


class StateRejected(StateStoreError, PermanentError):
    """The store refused the request (a missing table, no permission): a human must act."""


class StateConflict(StateStoreError):
    """A conditional write lost: the document is no longer at the version the writer read."""

    def __init__(self, namespace: str, key: str, expected: int) -> None:
        super().__init__(
            f"state {namespace}/{key}: changed by another writer (expected version {expected})"
        )
        self.namespace = namespace
        self.key = key
        self.expected = expected


@dataclass(frozen=True)
class Entry:
    """One stored document and its version (1 for the first write, +1 per write).

    ``damaged``: the stored bytes were not a JSON object; ``value`` is then empty,
    and a write with this ``version`` replaces the damaged document.
    """

    value: dict[str, Any]
    version: int
    damaged: bool = field(default=False, compare=False)


class StateStore(Protocol):
    """Small JSON documents keyed by (namespace, key), with conditional writes.

    Namespaces and keys are non-empty strings of at most 200 characters; a
    document is a JSON object of at most 64 KiB once serialised.
    """

    #: Where the documents live, for messages (``/var/lib/gitopsd/store``,
    #: ``dynamodb://gitopsd-state``).
    location: str

    async def get(self, namespace: str, key: str) -> Entry | None:
        """The document, or None when there is none."""
        ...

    async def put(self, namespace: str, key: str, value: Mapping[str, Any], *, expect: int) -> int:
        """Write ``value`` if the stored version is ``expect`` (0: no document); the new
        version. Raises :class:`StateConflict` when it is not."""
        ...

    async def delete(self, namespace: str, key: str, *, expect: int | None = None) -> None:
        """Remove the document (if at version ``expect``, when given; else
        :class:`StateConflict`). Deleting a missing document is not an error."""
        ...

    async def list(self, namespace: str) -> dict[str, Entry]:
        """Every document of ``namespace`` by key."""
        ...


def check_names(namespace: str, key: str) -> None:
    """Refuse names the stores cannot hold (a programming error, never user input)."""
    for what, name in (("namespace", namespace), ("key", key)):
        if not name or len(name) > 200 or "\0" in name:
            raise ValueError(f"state {what} must be 1 to 200 characters, got {name!r}")


#: The largest document, serialised (DynamoDB's item limit is 400 KB; this leaves room).
MAX_DOCUMENT = 64 * 1024


def serialise(namespace: str, key: str, value: Mapping[str, Any]) -> str:
    """``value`` as compact JSON; ``ValueError`` when it is not JSON or too large."""
    try:
        text = json.dumps(dict(value), sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"state {namespace}/{key}: not a JSON document: {exc}") from None
    if len(text.encode()) > MAX_DOCUMENT:
        raise ValueError(f"state {namespace}/{key}: larger than {MAX_DOCUMENT} bytes")
    return text


async def update(
    store: StateStore,
    namespace: str,
    key: str,
    change: Callable[[dict[str, Any]], dict[str, Any] | None],
) -> Entry:
    """Read, ``change``, write; on a conflict read again and re-apply ``change``.

    ``change`` gets a copy of the current document (``{}`` when there is none or
    it is damaged) and returns the new one, or None to leave it as it is. Returns
    the entry as stored.
    """
    for attempt in range(UPDATE_ATTEMPTS):
        if attempt:
            await anyio.sleep(random.uniform(0, UPDATE_PAUSE * attempt / UPDATE_ATTEMPTS))
        current = await store.get(namespace, key)
        old = dict(current.value) if current is not None else {}
        version = current.version if current is not None else 0
        new = change(dict(old))
        if new is None or (new == old and current is not None and not current.damaged):
            return current if current is not None else Entry({}, 0)
        try:
            stored = await store.put(namespace, key, new, expect=version)
        except StateConflict:
            log.info("state.conflict_retried", namespace=namespace, key=key)
            continue
        return Entry(new, stored)
    raise StateUnavailable(
        f"state {namespace}/{key} in {store.location}: still changing under us after "
        f"{UPDATE_ATTEMPTS} attempts (another gitopsd process writing the same records?)"
    )


__all__ = [
    "AGENT",
    "ALERTS",
    "APPLIED",
    "APPROVALS",
    "DELIVERIES",
    "NAMESPACES",
    "Entry",
    "StateConflict",
    "StateRejected",
    "StateStore",
    "StateStoreError",
    "StateUnavailable",
    "check_names",
    "serialise",
    "update",
]
