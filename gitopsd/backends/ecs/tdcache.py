"""Task definitions cached by ARN: shared by the process, bounded, persisted between runs.

A task-definition revision's content never changes once registered, so after
a service's ARN is known, describing it again only costs an API call: a no-op
pass at 1,000 services would otherwise make 1,000 DescribeTaskDefinition calls
on top of the 100 DescribeServices that are its floor. Two parts of a revision
*can* change: its tags (TagResource, UntagResource) and its status
(DeregisterTaskDefinition). So:

* the client forgets an entry when it writes one of those itself;
* each entry's tags and status are trusted for a while only (:data:`MAX_AGE`,
  spread per entry so a fleet described at once does not expire at once):
  tags or a status changed outside gitopsd show within that time;
* decisions that write on the strength of tags or status (the planner's
  ownership check before a task-definition write, prune's ownership check,
  rollback's status check) ask the client for a fresh copy.

One cache per endpoint and state directory is shared by every client of the
process (the agent's passes, across reloads). It is bounded by entries and by bytes (least recently
used go first). Entries are kept as compact JSON text, decoded on each read, so
a caller never changes the cached copy and 1,000 revisions take about 2 MB.

The one-shot CLI starts cold every time, so the cache is also persisted: one
zlib-compressed JSON file per endpoint under ``<state_dir>/cache/``, written
atomically when the process is done with it, read when the first client opens.
The file name and its content carry the endpoint, and every key is a full ARN,
which names the region and the account: two accounts or endpoints never mix.
A file that cannot be read or parsed is ignored (and replaced on the next save).
The cache trusts that an ARN is never reused, as in AWS (revision numbers only
grow, also after a deletion); a local endpoint that is restarted empty does
reuse them: delete the file (or the state directory) when restarting one.

The same file carries the planner's in-sync memo (:attr:`TaskDefinitionCache.in_sync`,
gitopsd.plan.memo): comparisons that found nothing to change, by a digest of their
inputs, so a one-shot ``diff`` of a fleet in sync does not normalise every document
again. It is kept only by the gitopsd that wrote it: the file records a fingerprint of
the code (every source file of the gitopsd package, and botocore's version, whose
models shape normalisation), and a memo with another fingerprint is ignored.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import random
import tempfile
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from gitopsd.plan.memo import ComparisonMemo

log = structlog.get_logger(__name__)

#: How long an entry's tags and status are trusted (seconds); each entry gets between
#: half and all of it, at random, so entries described together expire spread out.
MAX_AGE = 6 * 3600.0
#: Bounds of one cache (in memory and on disk): entries, and bytes of their JSON text.
MAX_ENTRIES = 20_000
MAX_BYTES = 64 * 1024 * 1024
#: The persisted file's format; a file of another version is ignored.
FORMAT = 1


class TaskDefinitionCache:
    """Task definitions (with ``tags``) by full ARN; LRU-bounded; thread-safe."""

    def __init__(
        self,
        namespace: str = "",
        *,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
        max_age: float = MAX_AGE,
        path: Path | None = None,
    ) -> None:
        self.namespace = namespace
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_age = max_age
        #: Where the cache is persisted (None: in memory only).
        self.path = path
        #: ARN -> (expiry as a Unix time, the entry as JSON text).
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        #: Whether anything changed since the last load or save.
        self.dirty = False
        #: The planner's comparisons found in sync, persisted with the cache (module doc).
        self.in_sync = ComparisonMemo()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, arn: str, *, now: float | None = None) -> dict[str, Any] | None:
        """A fresh copy of the cached task definition, or None (unknown or expired)."""
        with self._lock:
            found = self._entries.get(arn)
            if found is None or found[0] <= (time.time() if now is None else now):
                self.misses += 1
                return None
            self._entries.move_to_end(arn)
            self.hits += 1
        return _decode(found[1])

    def put(self, td: Mapping[str, Any], *, now: float | None = None) -> None:
        """Remember ``td`` (as DescribeTaskDefinition answers it, ``tags`` included)."""
        arn = td.get("taskDefinitionArn")
        if not isinstance(arn, str) or not arn:
            return
        text = _encode(td)
        if text is None:
            return  # not plain data: not cached (never cached wrong)
        expires = (time.time() if now is None else now) + self.max_age * random.uniform(0.5, 1.0)
        with self._lock:
            self._store(arn, expires, text)
            self.dirty = True

    def forget(self, arn: str) -> None:
        """Drop ``arn`` (its tags or status were just changed)."""
        with self._lock:
            found = self._entries.pop(arn, None)
            if found is not None:
                self._bytes -= len(found[1])
                self.dirty = True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self.dirty = True
        self.in_sync.clear()

    def _store(self, arn: str, expires: float, text: str) -> None:
        old = self._entries.pop(arn, None)
        if old is not None:
            self._bytes -= len(old[1])
        if len(text) > self.max_bytes:
            return
        self._entries[arn] = (expires, text)
        self._bytes += len(text)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._bytes -= len(dropped)

    # -- persistence -----------------------------------------------------------------------

    def load(self, path: Path | None = None) -> int:
        """Add the entries persisted at ``path`` (default: :attr:`path`) that are not expired
        and not known already; how many. A missing, damaged or foreign file adds nothing."""
        path = path or self.path
        if path is None:
            return 0
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.warning("tdcache.unreadable", path=str(path), error=str(exc))
            return 0
        try:
            data = json.loads(zlib.decompress(raw))
            if data.get("format") != FORMAT or data.get("namespace") != self.namespace:
                raise ValueError("another format or endpoint")
            entries = [(str(a), float(e), str(t)) for a, e, t in data["entries"]]
        except (ValueError, TypeError, KeyError, AttributeError, zlib.error) as exc:
            log.warning("tdcache.ignored", path=str(path), reason=str(exc) or type(exc).__name__)
            return 0
        now = time.time()
        added = 0
        with self._lock:
            # Saved least recently used first; loaded entries go before those already known.
            for arn, expires, text in reversed(entries):
                if expires > now and arn not in self._entries:
                    self._store(arn, expires, text)
                    self._entries.move_to_end(arn, last=False)
                    added += 1
        memo = data.get("in_sync")
        if isinstance(memo, dict) and memo.get("fingerprint") == comparison_fingerprint():
            self.in_sync.load(memo.get("entries"))
            self.in_sync.dirty = False
        return added

    def save(self, path: Path | None = None) -> bool:
        """Write the cache to ``path`` (default: :attr:`path`) atomically if it changed;
        whether it wrote. A failure to write is logged, never raised: it is only a cache."""
        path = path or self.path
        if path is None or not (self.dirty or self.in_sync.dirty):
            return False
        now = time.time()
        with self._lock:
            entries = [[a, e, t] for a, (e, t) in self._entries.items() if e > now]
            self.dirty = False
        memo = {"fingerprint": comparison_fingerprint(), "entries": self.in_sync.entries()}
        body = json.dumps(
            {"format": FORMAT, "namespace": self.namespace, "entries": entries, "in_sync": memo},
            separators=(",", ":"),
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(zlib.compress(body.encode("utf-8"), 6))
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            self.dirty = True
            log.warning("tdcache.save_failed", path=str(path), error=str(exc))
            return False
        return True


@functools.cache
def comparison_fingerprint() -> str:
    """A digest of the code comparisons depend on (every module of gitopsd, and botocore's
    version, whose models shape normalisation): a memo is reused only by the same code."""
    digest = hashlib.sha256()
    for dist in ("botocore", "gitopsd"):
        try:
            digest.update(f"{dist}={importlib.metadata.version(dist)};".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{dist}=?;".encode())
    package = Path(__file__).resolve().parents[2]  # gitopsd/backends/ecs/tdcache.py
    for source in sorted(package.rglob("*.py")):
        try:
            digest.update(str(source.relative_to(package)).encode() + source.read_bytes())
        except OSError:
            digest.update(f"{source}: unreadable {random.random()}".encode())  # never matches
    return digest.hexdigest()


def _encode(td: Mapping[str, Any]) -> str | None:
    """``td`` as JSON text; top-level datetimes (``registeredAt``, ...) are listed under
    ``"__datetimes__"`` so they are read back as datetimes. None: not plain data."""
    times = [k for k, v in td.items() if isinstance(v, datetime)]
    body: dict[str, Any] = {k: (v.isoformat() if k in times else v) for k, v in td.items()}
    if times:
        body["__datetimes__"] = times
    try:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return None


def _decode(text: str) -> dict[str, Any]:
    td: dict[str, Any] = json.loads(text)
    for key in td.pop("__datetimes__", ()):
        td[key] = datetime.fromisoformat(td[key])
    return td


# -- one cache per endpoint, for the whole process -------------------------------------------

_SHARED: dict[tuple[str, Path | None], TaskDefinitionCache] = {}
_SHARED_LOCK = threading.Lock()


def namespace_of(endpoint_url: str | None) -> str:
    """What a cache is kept apart by besides the ARN (which names region and account)."""
    return endpoint_url.rstrip("/") if endpoint_url else "aws"


def cache_file(state_root: Path, namespace: str) -> Path:
    """The persisted cache of ``namespace`` under the state directory ``state_root``."""
    digest = hashlib.sha256(namespace.encode("utf-8")).hexdigest()[:16]
    return state_root / "cache" / f"ecs-task-definitions-{digest}.json.z"


def shared_cache(namespace: str, path: Path | None = None) -> TaskDefinitionCache:
    """The process's cache for ``namespace`` persisted at ``path``; loaded on first use.

    One per state directory too: two configurations in one process (tests) never share.
    """
    with _SHARED_LOCK:
        found = _SHARED.get((namespace, path))
        if found is None:
            found = _SHARED[(namespace, path)] = TaskDefinitionCache(namespace, path=path)
            found.load()
        return found


def drop_shared() -> None:
    """Forget every process-wide cache (tests: a new process)."""
    with _SHARED_LOCK:
        _SHARED.clear()
