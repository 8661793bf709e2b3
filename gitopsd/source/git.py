"""A Git repository as gitopsd's source of truth: resolve a ref, fetch what is new, read files.

:class:`GitSource` keeps a bare cache repository per source (see
:mod:`gitopsd.source.cache`) and, on each poll, lists the remote's refs and
fetches only when the wanted ref points at a commit the cache lacks, and then
only that one ref's missing objects. A poll that finds nothing new downloads
nothing. Manifests are read from the object store at a commit, without a
working tree.

Refs: a branch, a tag (annotated tags peeled to their commit) or a commit id,
full or abbreviated; for a commit every branch is fetched and the commit must
be on one of them. Remotes: local paths and ``file://``, ``git://``,
``http(s)://`` with a token or username and password (see
:mod:`gitopsd.source.auth`; a token goes as basic auth with user
``x-access-token``, which GitHub, GitLab, Bitbucket and Gitea accept), and
``ssh://`` or scp-like ``user@host:path`` with a key file and known_hosts.

The blocking dulwich work runs in a worker thread under ``config.timeout``,
holding the cache's cross-process lock (a daemon and a CLI run may share a
state directory); lock and temporary files a crashed writer left in the cache
are removed first, whatever their age. Repacking runs after the timed part,
still under the lock. Failures are :class:`~gitopsd.errors.SourceUnavailable`
when a retry may help and :class:`~gitopsd.errors.SourceRejected` when a human
must act; messages name the source and its URL with secrets redacted.

Damage: the cache only holds what can be fetched again. Damaged files found by
a fetch, or by a read (:meth:`GitSource.read_tree` reads blobs no fetch
touches), are rebuilt: the cache is moved aside and cloned again, under the
lock, once the remote has answered (so an unreachable remote does not cost
the cache that an offline fallback may still read). A read that finds damage
rebuilds and fetches right away, within ``config.timeout``, and reads once
more, so the pass goes on; it also leaves a marker beside the cache
(:func:`cache.mark_damaged`), so the next fetch of any process rebuilds even if
this process stops first. An ``OSError`` such as ``EMFILE`` or ``EACCES`` never
counts as damage.

Offline: :meth:`GitSource.cached_revision` is the commit the cache holds for
the configured ref, with the time of the fetch that resolved it, read without
the network; :meth:`GitSource.is_ancestor` tells whether a commit descends from
another (a force-push or reset does not).

Reading never follows a symlink or a submodule (see :func:`cache.read_tree`),
and the results of the last commit's reads are kept, so the several apps of
one repository do not read the same files again.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import anyio
import anyio.to_thread
import structlog
from dulwich.client import HTTPProxyUnauthorized, HTTPUnauthorized
from dulwich.errors import GitProtocolError, NotGitRepository
from dulwich.file import FileLocked
from dulwich.objects import Commit, ObjectID, Tag
from dulwich.refs import Ref
from opentelemetry.trace import SpanKind
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from gitopsd.config import SourceConfig
from gitopsd.errors import SourceError, SourceRejected, SourceUnavailable
from gitopsd.model import Revision
from gitopsd.source import cache, gitcli
from gitopsd.source.auth import (
    Credentials,
    Transport,
    redact_url,
    resolve_credentials,
    strip_userinfo,
    transport_of,
)
from gitopsd.source.remote import (
    Remote,
    classify,
    close_remote,
    keeps_connections,
    not_smart_http,
    open_remote,
    settle_remote,
    use_listing,
)
from gitopsd.telemetry import instruments as ins

log = structlog.get_logger(__name__)

_NETWORK_ERRORS = (
    OSError,
    GitProtocolError,
    NotGitRepository,
    HTTPUnauthorized,
    HTTPProxyUnauthorized,
    Urllib3HTTPError,
)
_LISTED = 10  # how many branch or tag names an error message lists
_HTTP_HAVES = 32
"""Commits offered as haves over smart HTTP beyond the tips of the cache's refs.

A fast-forward needs only the tip; a force-push to a commit far below it
fetches some objects the cache has, rather than walking the history here.
"""
_TREE_CACHE_BYTES = 32 * 1024 * 1024
"""At most this much file content is kept from the last commit's reads."""

_Selector = Callable[[Mapping[Ref, ObjectID]], Mapping[Ref, ObjectID]]
"""Picks the refs to fetch from the advertisement the fetch received."""

_TreeKey = tuple[ObjectID, tuple[str, ...], tuple[str, ...] | None]
"""(commit, prefix parts, suffix filter) of one ``read_tree``."""


class _OtherOwner(Exception):
    """``git upload-pack`` refused a local repository that another user owns."""


class _Waiting:
    """What a fetch running in a worker thread waits for, if anything, so a timeout can say it."""

    def __init__(self) -> None:
        self.busy: str | None = None  # the message for "still waiting when the time was up"


class _DamageFound(Exception):
    """A read found the cache damaged (already remembered, and the reader closed)."""

    def __init__(self, reason: str, generation: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.generation = generation  # of the cache the read used (see GitSource._generation)


@dataclass(frozen=True)
class CachedRevision:
    """The commit the cache holds for a source's configured ref, found without the network.

    ``fetched_at`` is when (epoch seconds, ``time.time()``) the last successful
    fetch resolved the configured ref to this commit, or None if unknown (the
    commit came from a fetch of another ref, or from a version that did not
    record it). ``revision.stale`` is empty: the caller says why it falls back.
    """

    revision: Revision
    fetched_at: float | None


@dataclass(frozen=True)
class FetchStats:
    """What one :meth:`GitSource.fetch` did.

    ``fetched`` is False when the cache already had the commit (no objects
    were requested); ``objects`` counts the objects in the packs the fetch
    wrote (including bases added to complete a thin pack). ``duration`` is the
    timed part, without repacking.
    """

    revision: Revision
    fetched: bool
    objects: int
    duration: float
    #: Bytes of the packs the fetch wrote (0 when nothing was fetched).
    bytes: int = 0


class GitSource:
    """One configured Git source, with its cache under ``cache_root``.

    Safe to use from one event loop: concurrent ``fetch`` calls are serialised,
    and so are fetches of other instances and processes on the same cache.
    ``read_tree`` may be called from any thread. With ``repair_reads=False``
    (``--offline``: no network at all) a read that finds damage only remembers
    it for the next fetch, rather than rebuilding and fetching itself.
    """

    def __init__(
        self,
        config: SourceConfig,
        cache_root: Path,
        *,
        repack_after: int = cache.REPACK_AFTER_PACKS,
        git: str | None = "",
        repair_reads: bool = True,
    ) -> None:
        self.config = config
        self.path = cache.cache_dir(cache_root, config.name, _cache_key(config.url))
        self.last_fetch: FetchStats | None = None
        self._repack_after = repack_after
        self._git = git  # see open_remote
        self._repair_reads = repair_reads
        self._what = f"source {config.name!r} ({redact_url(config.url)})"
        self._fetch_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._reader: cache.CacheRepo | None = None
        self._reader_identity: str | None = None  # cache.identity of the reader's directory
        # Damage a read found, and the identity of the directory it was found in; also
        # on disk (cache.mark_damaged), this copy is for when the marker cannot be written.
        self._damaged: tuple[str, str | None] | None = None
        self._generation = 0  # counts this instance's rebuilds (under the read lock)
        self._repair_lock = threading.Lock()
        self._repair_failed: str | None = None  # why a read's repair failed since the last fetch
        self._trees: dict[_TreeKey, dict[str, bytes]] = {}
        self._trees_commit: ObjectID | None = None
        self._trees_bytes = 0
        self._fetched_bytes = 0  # of the fetch in progress (under the fetch lock)
        self._deadline = 0.0  # of the fetch in progress (monotonic; under the fetch lock)
        # An HTTP remote kept between polls (its connections stay open), with what it was
        # opened for; taken and put back under the fetch lock.
        self._kept: tuple[tuple[object, ...], Remote] | None = None
        self._open_key: tuple[object, ...] = ()  # what the remote in use was opened for

    # -- fetch -------------------------------------------------------------

    async def fetch(self) -> Revision:
        """Resolve the configured ref on the remote, fetch if the cache lacks it, return it."""
        timeout = self.config.timeout
        deadline = time.monotonic() + timeout
        waiting = _Waiting()
        started = time.monotonic()
        labels = {ins.SOURCE: self.config.name}
        with ins.tracer.start_as_current_span(
            "git.fetch",
            kind=SpanKind.CLIENT,
            attributes={ins.SOURCE: self.config.name, ins.REF: self.config.ref},
        ) as span:
            try:
                with anyio.fail_after(timeout):
                    stats, repack_due = await anyio.to_thread.run_sync(
                        self._fetch_sync, deadline, waiting, abandon_on_cancel=True
                    )
            except BaseException as exc:
                ins.git_fetch_duration.record(
                    time.monotonic() - started, {**labels, ins.RESULT: "error"}
                )
                if isinstance(exc, TimeoutError):
                    raise self._timed_out(waiting) from None
                raise
            span.set_attributes(
                {
                    ins.REVISION: stats.revision.commit,
                    "gitopsd.git.fetched": stats.fetched,
                    "gitopsd.git.objects": stats.objects,
                    "gitopsd.git.bytes": stats.bytes,
                }
            )
        ins.git_fetch_duration.record(time.monotonic() - started, {**labels, ins.RESULT: "ok"})
        if stats.bytes:
            ins.git_fetch_bytes.add(stats.bytes, labels)
        self._fetched(stats)
        if repack_due:  # not timed: a slow repack is not a slow remote
            await anyio.to_thread.run_sync(self._housekeeping, abandon_on_cancel=True)
        return stats.revision

    def _fetched(self, stats: FetchStats) -> None:
        self.last_fetch = stats
        rev = stats.revision
        emit = log.info if stats.fetched else log.debug
        emit(
            "source.fetch",
            source=rev.source,
            ref=rev.ref,
            commit=rev.commit,
            fetched=stats.fetched,
            objects=stats.objects,
            bytes=stats.bytes,
            duration=round(stats.duration, 4),
        )

    def _timed_out(self, waiting: _Waiting) -> SourceUnavailable:
        if waiting.busy is not None:  # the time ran out while waiting for a lock
            return SourceUnavailable(waiting.busy)
        return SourceUnavailable(
            f"{self._what}: no answer within {self.config.timeout:g}s "
            f"(sources[{self.config.name}].timeout); the fetch will be retried"
        )

    @contextmanager
    def _locked(self, deadline: float | None, waiting: _Waiting | None = None) -> Iterator[bool]:
        """Hold this instance's fetch lock and the cache's cross-process lock.

        Wait until ``deadline`` and raise ``SourceUnavailable`` if still busy;
        with no deadline, try once and yield False if busy. ``waiting`` says
        which lock is being waited for meanwhile.
        """
        waiting = waiting or _Waiting()
        previous = f"{self._what}: the previous fetch is still running"
        other = (
            f"{self._what}: another gitopsd process is still fetching into "
            f"{self.path}; the fetch will be retried"
        )
        waiting.busy = previous
        try:
            if deadline is None:
                acquired = self._fetch_lock.acquire(blocking=False)
            else:
                acquired = self._fetch_lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
        finally:
            waiting.busy = None
        if not acquired:
            if deadline is None:
                yield False
                return
            raise SourceUnavailable(previous)
        try:
            lock = cache.CacheLock(self.path)
            waiting.busy = other
            try:
                held = lock.acquire(deadline)
            except OSError as exc:
                raise SourceUnavailable(
                    f"{self._what}: cannot lock the cache ({lock.path}): "
                    f"{exc.strerror or exc}; check that the state directory is writable"
                ) from None
            finally:
                waiting.busy = None
            if not held and deadline is not None:
                raise SourceUnavailable(other)
            with lock:
                yield held
        finally:
            self._fetch_lock.release()

    def _fetch_sync(
        self, deadline: float, waiting: _Waiting | None = None
    ) -> tuple[FetchStats, bool]:
        started = time.monotonic()
        try:
            transport = transport_of(self.config.url)
        except ValueError as exc:
            raise SourceRejected(
                f"{self._what}: {exc}; sources[{self.config.name}].url must be a path, "
                "file://, git://, http(s)://, ssh:// or user@host:path URL"
            ) from None
        creds = resolve_credentials(self.config, transport)
        with self._locked(deadline, waiting):
            self._fetched_bytes = 0
            self._deadline = deadline
            commit, fetched, objects = self._sync_cache(transport, creds)
            self._record_fetch(commit.decode("ascii"))
            try:
                repack_due = len(cache.pack_names(self.path)) > self._repack_after
            except OSError:
                repack_due = False  # housekeeping only; the next fetch looks again
        self._repair_failed = None
        revision = Revision(self.config.name, self.config.ref, commit.decode("ascii"))
        stats = FetchStats(
            revision, fetched, objects, time.monotonic() - started, self._fetched_bytes
        )
        return stats, repack_due

    def _record_fetch(self, commit: str) -> None:
        """Remember when the configured ref was resolved (caller holds the cache lock)."""
        try:
            cache.record_fetch(self.path, self.config.ref, commit, time.time())
        except OSError as exc:  # only the offline fallback's age is lost
            log.warning(
                "source.fetch_record_failed",
                source=self.config.name,
                path=str(cache.fetch_record_file(self.path)),
                error=exc.strerror or str(exc),
            )

    def _sync_cache(self, transport: Transport, creds: Credentials) -> tuple[ObjectID, bool, int]:
        """Bring the cache up to date, rebuilding it once if it turns out damaged."""
        try:
            removed = cache.remove_stale_files(self.path)  # we hold the lock: all are leftovers
        except OSError:
            removed = []  # opening the cache reports what is wrong
        if removed:
            log.warning("source.cache_stale_files_removed", source=self.config.name, files=removed)
        pending = self._pending_damage()
        if pending is not None:
            self._rebuild(pending, transport, creds)
        for attempt in (1, 2):
            try:
                try:
                    repo = cache.open_cache(self.path)
                except OSError as exc:  # EMFILE, EACCES, ...: the files may be fine, keep them
                    raise SourceUnavailable(
                        f"{self._what}: cannot open the cache at {self.path}: "
                        f"{exc.strerror or exc}; {_os_hint(exc)}"
                    ) from None
                with repo:
                    return self._sync(repo, transport, creds)
            except cache.CacheDamaged as exc:
                if attempt == 2:
                    raise SourceUnavailable(
                        f"{self._what}: the cache at {self.path} is damaged ({exc}) even "
                        "after it was rebuilt; the fetch will be retried"
                    ) from None
                self._rebuild(str(exc), transport, creds)
        raise AssertionError("unreachable")

    def _pending_damage(self) -> str | None:
        """Why the cache now at ``self.path`` must be rebuilt before fetching, or None.

        Damage this instance found, or a marker any process left (see
        :func:`cache.pending_damage`); either is ignored once the directory it
        was found in has been replaced. Caller holds the cache lock.
        """
        if self._damaged is not None:
            reason, found_in = self._damaged
            if found_in is None or found_in == cache.identity(self.path):
                return reason
            self._damaged = None  # another process rebuilt the cache since
        try:
            return cache.pending_damage(self.path)
        except OSError:
            return None  # an unreadable marker is no proof of damage; the next fetch looks again

    def _rebuild(self, reason: str, transport: Transport, creds: Credentials) -> None:
        """Move the damaged cache aside and start an empty one (caller holds the locks).

        The damage is written down first, so a failure below (or a crash) leaves
        it for the next fetch, and the remote must answer before the cache is
        thrown away: when it cannot be fetched again, a damaged cache still
        serves the commits it can read. The remote's failure is raised as is.
        """
        if self._damaged is None:  # else a read found it and already marked it
            self._remember_damage(reason, cache.identity(self.path))
        remote, _refs = self._connect(transport, creds)
        self._release(remote, ok=True)
        try:
            aside = cache.rebuild(self.path)
        except OSError as exc:
            raise SourceUnavailable(
                f"{self._what}: the cache at {self.path} is damaged ({reason}) and cannot "
                f"be replaced: {exc.strerror or exc}; check the state directory"
            ) from None
        log.warning(
            "source.cache_rebuilt",
            source=self.config.name,
            path=str(self.path),
            reason=reason,
            moved_to=str(aside) if aside else None,
        )
        self._damaged = None
        with self._read_lock:  # reads reopen the new cache
            self._close_reader()
            self._generation += 1

    def _remember_damage(self, reason: str, found_in: str | None) -> None:
        """Keep the damage in memory and on disk, for the next fetch of this or any process."""
        self._damaged = (reason, found_in)
        try:
            cache.mark_damaged(self.path, reason, found_in)
        except OSError as exc:  # this process still remembers; a restart finds it again
            log.warning(
                "source.cache_damage_mark_failed",
                source=self.config.name,
                path=str(cache.damage_marker(self.path)),
                error=exc.strerror or str(exc),
            )

    def _housekeeping(self) -> None:
        """Repack once fetches have piled up packs; a failure here must not fail the fetch."""
        try:
            with self._locked(None) as held:
                if not held:
                    return  # another fetch holds the cache: a later fetch repacks
                found_in = cache.identity(self.path)
                with cache.open_cache(self.path, create=False) as repo:
                    try:
                        with cache.damage_is_rebuild(repo):
                            repacked = cache.maybe_repack(repo, self._repack_after)
                    except cache.CacheDamaged as exc:  # repacking reads every object
                        self._remember_damage(str(exc), found_in)
                        raise
                    if repacked:
                        log.info("source.repack", source=self.config.name, path=str(self.path))
        except Exception as exc:  # housekeeping only: the fetched data is already safe
            log.warning("source.repack_failed", source=self.config.name, error=str(exc))

    def _sync(
        self, repo: cache.CacheRepo, transport: Transport, creds: Credentials
    ) -> tuple[ObjectID, bool, int]:
        """Bring the cache up to date for the configured ref; return (commit, fetched, objects).

        Dulwich's corruption errors from the cache become ``CacheDamaged``; the
        network calls classify their own failures.
        """
        cfg = self.config
        with cache.damage_is_rebuild(repo):
            # Read every ref and its commit before any network traffic, so a damaged
            # cache shows here rather than as an odd failure in the middle of a fetch.
            missing = cache.dangling_refs(repo)
            if missing:  # objects were lost (a pack deleted or truncated away): rebuild
                raise cache.CacheDamaged(
                    "refs point at objects the cache does not hold: " + ", ".join(missing[:5])
                )
            repo.haves = cache.local_commits(repo)
            if transport is Transport.HTTP:
                repo.haves_limit = _HTTP_HAVES + len(repo.haves)
            if cfg.commit:
                known = self._find_commit(repo, cfg.commit)
                if known is not None:  # commits never move: no need to ask the remote
                    return known, False, 0
            remote, refs = self._connect(transport, creds)
            ok = False
            try:
                if cfg.commit:
                    found = self._sync_commit(repo, remote, creds, refs, cfg.commit)
                else:
                    found = self._sync_ref(repo, remote, creds, refs, Ref(cfg.ref.encode("utf-8")))
                ok = True
                return found
            finally:
                self._release(remote, ok=ok)

    def _connect(
        self, transport: Transport, creds: Credentials
    ) -> tuple[Remote, dict[Ref, ObjectID]]:
        """Open the remote and list its refs (the caller closes the remote)."""
        cfg = self.config
        try:
            remote = self._open(transport, creds)
        except ValueError as exc:
            raise SourceRejected(
                f"{self._what}: cannot parse the URL: {exc}; check sources[{cfg.name}].url"
            ) from None
        try:
            return remote, self._list_refs(remote, creds)
        except _OtherOwner:
            # git refuses to serve a repository another user owns (safe.directory);
            # dulwich's in-process client runs nothing from it, as before git was used.
            close_remote(remote)
            log.info("source.local_in_process", source=cfg.name, reason="owned by another user")
            self._git = None
            return self._connect(transport, creds)
        except BaseException:
            close_remote(remote)
            raise

    def _open(self, transport: Transport, creds: Credentials) -> Remote:
        """The remote kept from the last poll if it was opened the same way, else a new one.

        Credentials are part of the key: a rotated token opens a new client.
        """
        cfg = self.config
        key = (cfg.url, transport, creds.username, creds.password, creds.ssh_command, self._git)
        self._open_key = key
        kept, self._kept = self._kept, None
        if kept is not None:
            if kept[0] == key:
                return kept[1]
            close_remote(kept[1])
        self._open_key = key
        return open_remote(cfg.url, transport, creds, cfg.timeout, git=self._git)

    def _release(self, remote: Remote, *, ok: bool) -> None:
        """Keep an HTTP remote that just worked for the next poll; close anything else."""
        if ok and keeps_connections(remote):
            settle_remote(remote)
            self._kept = (self._open_key, remote)
        else:
            close_remote(remote)

    def _sync_ref(
        self,
        repo: cache.CacheRepo,
        remote: Remote,
        creds: Credentials,
        refs: Mapping[Ref, ObjectID],
        ref: Ref,
    ) -> tuple[ObjectID, bool, int]:
        """A branch or tag: fetch that one ref if the cache lacks what it points at."""
        sha = refs.get(ref)
        if sha is None:
            self._missing_ref(refs)
        fetched, objects = False, 0
        if sha not in repo.object_store:
            advertised: dict[Ref, ObjectID] = {}

            def select(current: Mapping[Ref, ObjectID]) -> Mapping[Ref, ObjectID]:
                # The fetch's own advertisement wins: the ref may have moved since listing.
                if ref in current:
                    advertised[ref] = current[ref]
                return advertised

            got = self._download(repo, remote, creds, select, [f"+{ref.decode()}:{ref.decode()}"])
            fetched, objects = got is not None, got or 0
            if ref not in advertised or advertised[ref] not in repo.object_store:
                self._missing_ref(refs)
            sha = advertised[ref]
        commit = cache.peel_to_commit(repo, sha)
        if commit is None:
            raise SourceRejected(
                f"{self._what}: {ref.decode()} does not point at a commit; "
                f"check sources[{self.config.name}].tag"
            )
        self._set_ref(repo, ref, sha)
        return commit, fetched, objects

    def _sync_commit(
        self,
        repo: cache.CacheRepo,
        remote: Remote,
        creds: Credentials,
        refs: Mapping[Ref, ObjectID],
        commit: str,
    ) -> tuple[ObjectID, bool, int]:
        """A commit id the cache lacks: fetch every branch, then look for it."""
        got = self._download(repo, remote, creds, _heads, ["+refs/heads/*:refs/heads/*"])
        for name, sha in _heads(refs).items():
            if sha in repo.object_store:
                self._set_ref(repo, name, sha)
        found = self._find_commit(repo, commit)
        if found is None:
            raise SourceRejected(
                f"{self._what}: commit {commit} is not on any branch of the remote "
                f"(branches: {_names(refs, b'refs/heads/')}); "
                f"check sources[{self.config.name}].commit"
            )
        return found, got is not None, got or 0

    def _set_ref(self, repo: cache.CacheRepo, name: Ref, sha: ObjectID) -> None:
        try:
            cache.set_ref(repo, name, sha)
        except FileLocked as exc:
            self._locked_by_other(exc, name.decode("utf-8", "replace"))

    def _locked_by_other(self, exc: FileLocked, what: str) -> NoReturn:
        """A lock file appeared after the fetch removed the leftovers: a program besides gitopsd."""
        lock = exc.lockfilename
        shown = lock.decode("utf-8", "replace") if isinstance(lock, bytes) else lock
        raise SourceUnavailable(
            f"{self._what}: {what} is locked ({shown}) by a program other than gitopsd "
            f"writing to the cache at {self.path}; the next fetch removes a leftover lock"
        ) from None

    def _list_refs(self, remote: Remote, creds: Credentials) -> dict[Ref, ObjectID]:
        cfg = self.config
        if cfg.tag:
            prefixes = [b"refs/tags/"]
        elif cfg.commit:
            prefixes = [b"HEAD", b"refs/heads/"]
        else:
            prefixes = [b"refs/heads/"]
        try:
            result = remote.client.get_refs(
                remote.path.encode("utf-8"), protocol_version=2, ref_prefix=prefixes
            )
        except Exception as exc:  # only the remote is involved: every failure is its answer
            if self._git is not None and "dubious ownership" in str(exc):
                raise _OtherOwner from exc
            self._fail(exc, creds, remote.transport)
        if remote.transport is Transport.HTTP and getattr(remote.client, "dumb", False):
            # Not application/x-git-*: dulwich fell back to "dumb" HTTP, which a sign-in
            # page or a web UI answering 200 also looks like.
            raise not_smart_http(self._what, f"sources[{cfg.name}].url")
        return {
            Ref(name): ObjectID(sha)
            for name, sha in result.refs.items()
            if sha is not None and any(name.startswith(p) for p in prefixes)
        }

    def _download(
        self,
        repo: cache.CacheRepo,
        remote: Remote,
        creds: Credentials,
        select: _Selector,
        refspecs: list[str],
    ) -> int | None:
        """Fetch the objects of the refs ``select`` picks that the cache lacks.

        Into an empty cache, ``git fetch`` of ``refspecs`` when the git CLI is
        there (see :mod:`gitopsd.source.gitcli`), else (or if it fails) dulwich.
        Return None if nothing was requested, else the number of objects written.
        """
        if not repo.haves:
            got = self._clone_with_git(repo, remote, creds, select, refspecs)
            if got is not None:
                return got
        requested: list[ObjectID] = []

        def determine_wants(
            refs: Mapping[Ref, ObjectID], depth: int | None = None
        ) -> list[ObjectID]:
            chosen = select(refs)
            requested[:] = dict.fromkeys(s for s in chosen.values() if s not in repo.object_store)
            return list(requested)

        before = cache.pack_names(self.path)
        use_listing(remote)  # the refs were listed just before: HTTP need not list them again
        try:
            remote.client.fetch(
                remote.path.encode("utf-8"),
                repo,
                determine_wants=determine_wants,
                protocol_version=remote.fetch_protocol,
            )
        except SourceError:
            raise
        except _NETWORK_ERRORS as exc:
            self._fail(exc, creds, remote.transport)
        except FileLocked as exc:
            self._locked_by_other(exc, "the cache")
        except Exception as exc:
            # The received pack or the cache (bases of a thin pack, the haves): only a
            # full check of the cache tells which one is broken.
            damage = cache.find_damage(repo)
            if damage is not None:
                cache.forget_frames(exc)
                raise cache.CacheDamaged(damage) from exc
            self._fail(exc, creds, remote.transport)
        if not requested:
            return None
        new = cache.pack_names(self.path) - before
        for name in new:
            with contextlib.suppress(OSError):
                pack = self.path / "objects" / "pack" / f"{name}.pack"
                self._fetched_bytes += pack.stat().st_size
        return cache.count_objects(repo, new)

    def _clone_with_git(
        self,
        repo: cache.CacheRepo,
        remote: Remote,
        creds: Credentials,
        select: _Selector,
        refspecs: list[str],
    ) -> int | None:
        """Fill the empty cache with ``git fetch``; None if git is absent or failed (use dulwich).

        The refs git wrote are what ``select`` picks from, as it would from the
        advertisement of a dulwich fetch.
        """
        binary = shutil.which("git") if self._git == "" else self._git
        if binary is None:
            return None
        command = gitcli.fetch_command(
            binary, self.path, self.config.url, remote.transport, creds, refspecs,
            self.config.timeout,
        )  # fmt: skip
        before = cache.pack_names(self.path)
        try:
            failed = gitcli.run_fetch(command, self._deadline, creds)
        except gitcli.GitTimedOut:
            raise self._timed_out(_Waiting()) from None
        if failed is not None:
            log.warning("source.git_cli_failed", source=self.config.name, error=failed)
            return None
        with cache.damage_is_rebuild(repo):
            written = {
                Ref(name): sha
                for name, sha in repo.refs.as_dict().items()
                if name != b"HEAD" and sha in repo.object_store
            }
            if not select(written):
                return None  # git fetched nothing of what is wanted: let dulwich try
            new = cache.pack_names(self.path) - before
            for name in new:
                with contextlib.suppress(OSError):
                    pack = self.path / "objects" / "pack" / f"{name}.pack"
                    self._fetched_bytes += pack.stat().st_size
            return cache.count_objects(repo, new)

    def _find_commit(self, repo: cache.CacheRepo, commit: str) -> ObjectID | None:
        try:
            return cache.find_commit(repo, commit)
        except cache.AmbiguousCommit:
            raise SourceRejected(
                f"{self._what}: commit {commit} is ambiguous (it abbreviates several commits); "
                f"give more digits in sources[{self.config.name}].commit"
            ) from None

    def _missing_ref(self, refs: Mapping[Ref, ObjectID]) -> NoReturn:
        cfg = self.config
        if cfg.tag:
            raise SourceRejected(
                f"{self._what}: tag {cfg.tag!r} does not exist on the remote; "
                f"tags: {_names(refs, b'refs/tags/')}; check sources[{cfg.name}].tag"
            )
        branch = cfg.branch or "main"
        key = "branch" + ("" if cfg.branch else " (default 'main')")
        raise SourceRejected(
            f"{self._what}: branch {branch!r} does not exist on the remote; "
            f"branches: {_names(refs, b'refs/heads/')}; check sources[{cfg.name}].{key}"
        )

    def _fail(self, exc: BaseException, creds: Credentials, transport: Transport) -> NoReturn:
        url_key = f"sources[{self.config.name}].url"
        raise classify(exc, self._what, creds, url_key, transport=transport) from None

    # -- read --------------------------------------------------------------

    def read_tree(
        self, commit: str, prefix: str, *, suffixes: tuple[str, ...] | None = None
    ) -> dict[str, bytes]:
        """Every file below ``prefix`` (``""`` or ``"."``: the whole repository) at ``commit``.

        Keys are repository-relative POSIX paths (``apps/web/base/service.yaml``).
        With ``suffixes`` (``(".yaml", ".yml", ".json")``) only files whose name
        ends with one of them and that are not hidden are read. ``commit`` must
        have been fetched. A missing path, or a symlink or submodule on or
        below it, raises ``SourceRejected``.

        A damaged cache is rebuilt and fetched again (blocking, within
        ``config.timeout``; call this from a worker thread) and the read is
        tried once more; if that cannot be done now, ``SourceUnavailable`` (the
        damage is remembered on disk: the next fetch rebuilds).
        """
        try:
            parts = cache.normalise_prefix(prefix)
        except ValueError as exc:
            raise SourceRejected(f"{self._what}: {exc}") from None
        try:
            return self._read_once(commit, parts, suffixes, repaired=False)
        except _DamageFound as found:
            self._repair(found)
        try:
            return self._read_once(commit, parts, suffixes, repaired=True)
        except _DamageFound as found:
            raise SourceUnavailable(
                f"{self._what}: the cache at {self.path} is damaged ({found.reason}) even "
                "after it was rebuilt; the next fetch rebuilds it again"
            ) from None

    def _read_once(
        self,
        commit: str,
        parts: tuple[str, ...],
        suffixes: tuple[str, ...] | None,
        *,
        repaired: bool,
    ) -> dict[str, bytes]:
        """One attempt of :meth:`read_tree`; damage raises ``_DamageFound``."""
        short = commit[:7]
        with self._read_lock:
            generation = self._generation
            repo = self._open_reader(generation)
            try:
                try:
                    found = cache.find_commit(repo, commit)
                except cache.AmbiguousCommit:
                    found = None
                if found is None:
                    if repaired:  # the cache was cloned again: the remote's ref moved on
                        raise SourceUnavailable(
                            f"{self._what}: commit {short} is not in the cache any more: it "
                            f"was cloned again after damage, and {self.config.ref} no longer "
                            "holds the commit; the next pass reads the current one"
                        )
                    raise SourceRejected(
                        f"{self._what}: commit {short} is not in the cache; fetch it first"
                    )
                key: _TreeKey = (found, parts, suffixes)
                files = self._cached_tree(key)
                if files is None:
                    files = cache.read_tree(repo, found, "/".join(parts), suffixes=suffixes)
                    self._remember_tree(key, files)
                return dict(files)
            except cache.PathNotFound:
                shown = cache.display("/".join(parts))
                raise SourceRejected(
                    f"{self._what}: path {shown!r} does not exist at commit {short}"
                ) from None
            except cache.NotFollowed as exc:
                raise SourceRejected(f"{self._what}: at commit {short}, {exc}") from None
            except SourceError:
                raise
            except OSError as exc:  # EMFILE, EACCES, ...: the files may be fine, keep them
                raise SourceUnavailable(
                    f"{self._what}: cannot read the cache at {self.path}: "
                    f"{exc.strerror or exc}; {_os_hint(exc)}"
                ) from None
            except Exception as exc:
                reason = cache.damage_in(repo, exc)
                if reason is None:
                    raise  # not damage: a bug, reported as such
                cache.forget_frames(exc)  # so the reader's packs can be closed
            self._found_damage(reason, "read")
            raise _DamageFound(reason, generation)

    def _repair(self, found: _DamageFound) -> None:
        """Rebuild the cache a read found damaged and fetch again, within ``config.timeout``.

        At most once between two fetches: when it fails (the remote is down),
        later reads fail at once until a fetch succeeds, rather than each
        waiting for the remote again.
        """
        if not self._repair_reads:
            raise self._damaged_error(found.reason)
        with self._repair_lock:
            if self._generation != found.generation:
                return  # rebuilt by another read (or a fetch) since: just read again
            if self._repair_failed is not None:
                raise SourceUnavailable(
                    f"{self._what}: the cache at {self.path} is damaged ({found.reason}) and "
                    f"could not be rebuilt ({self._repair_failed}); the next fetch retries"
                )
            try:
                stats = self._fetch_in_thread()
            except SourceError as exc:
                self._repair_failed = str(exc)
                raise SourceUnavailable(
                    f"{self._what}: the cache at {self.path} is damaged ({found.reason}) and "
                    f"could not be rebuilt now: {exc}; the next fetch retries"
                ) from None
            self._fetched(stats)

    def _fetch_in_thread(self) -> FetchStats:
        """``_fetch_sync`` from a synchronous caller, given up after ``config.timeout``.

        Like :meth:`fetch`, an abandoned fetch goes on in its thread, holding
        the locks until its sockets time out.
        """
        timeout = self.config.timeout
        deadline = time.monotonic() + timeout
        waiting = _Waiting()
        outcome: list[FetchStats | BaseException] = []

        def run() -> None:
            try:
                outcome.append(self._fetch_sync(deadline, waiting)[0])
            except BaseException as exc:  # handed to the waiting caller
                outcome.append(exc)

        worker = threading.Thread(target=run, name=f"gitopsd-repair-{self.config.name}")
        worker.daemon = True
        worker.start()
        worker.join(timeout)
        if not outcome:
            raise self._timed_out(waiting)
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _found_damage(self, reason: str, found_by: str) -> None:
        """A read found damage: close the reader, remember, log (caller holds the read lock)."""
        found_in = self._reader_identity
        self._close_reader()
        self._remember_damage(reason, found_in)
        log.warning(
            "source.cache_damaged",
            source=self.config.name,
            path=str(self.path),
            reason=reason,
            found_by=found_by,
            marker=str(cache.damage_marker(self.path)),
        )

    def _open_reader(self, generation: int) -> cache.CacheRepo:
        """The repository reads use, opened once (caller holds the read lock)."""
        if self._reader is None:
            if not self.path.exists():
                raise SourceRejected(f"{self._what}: nothing fetched yet; call fetch() first")
            found_in = cache.identity(self.path)
            try:
                self._reader = cache.open_cache(self.path, create=False)
            except cache.CacheDamaged as exc:
                self._reader_identity = found_in
                self._found_damage(str(exc), "open")
                raise _DamageFound(str(exc), generation) from None
            except OSError as exc:
                raise SourceUnavailable(
                    f"{self._what}: cannot open the cache at {self.path}: {exc.strerror or exc}"
                ) from None
            self._reader_identity = found_in
        return self._reader

    # -- offline -----------------------------------------------------------

    def cached_revision(self) -> CachedRevision:
        """The commit the cache holds for the configured ref, without any network access.

        A branch or tag as the last fetch of it stored it (tags peeled to their
        commit); a configured ``commit`` if the cache has it. For when the
        remote cannot be reached: works in a new process, and takes no cache
        lock (refs and packs are replaced atomically). Raise ``SourceRejected``
        if the cache holds no commit for the ref, and ``SourceUnavailable`` if
        it is damaged (remembered: the next fetch rebuilds it).
        """
        cfg = self.config
        nothing = SourceRejected(
            f"nothing fetched yet for {self._what}: no cached commit to fall back to"
        )
        with self._read_lock:
            if not self.path.is_dir():
                raise nothing
            try:
                repo = self._open_reader(self._generation)
            except _DamageFound as found:
                raise self._damaged_error(found.reason) from None
            try:
                if cfg.commit:
                    commit = self._find_commit(repo, cfg.commit)
                else:
                    commit = self._cached_ref(repo, Ref(cfg.ref.encode("utf-8")))
            except SourceError:
                raise
            except Exception as exc:
                reason = cache.damage_in(repo, exc)
                if reason is None:
                    raise
                cache.forget_frames(exc)
            else:
                if commit is None:
                    raise nothing
                sha = commit.decode("ascii")
                record = cache.last_fetch(self.path, cfg.ref)
                fetched_at = record.at if record is not None and record.commit == sha else None
                return CachedRevision(Revision(cfg.name, cfg.ref, sha), fetched_at)
            self._found_damage(reason, "cached_revision")
        raise self._damaged_error(reason)

    @staticmethod
    def _cached_ref(repo: cache.CacheRepo, ref: Ref) -> ObjectID | None:
        try:
            sha = repo.refs[ref]
        except KeyError:
            return None
        if sha not in repo.object_store:
            return None
        return cache.peel_to_commit(repo, sha)

    def commit_message(self, commit: str) -> str:
        """The first line of ``commit``'s message, from the cache; "" when it is not there."""
        with self._read_lock:
            if not self.path.is_dir():
                return ""
            try:
                repo = self._open_reader(self._generation)
                found = cache.find_commit(repo, commit)
                obj = repo.object_store[found] if found is not None else None
            except Exception:  # a hint for display only: never fail over it
                return ""
        if not isinstance(obj, Commit):
            return ""
        return obj.message.decode("utf-8", "replace").strip().splitlines()[0] if obj.message else ""

    def signed_object(self, commit: str, *, tag: bool = False) -> Commit | Tag:
        """The commit object ``commit`` as fetched, for signature checks (:mod:`.verify`).

        With ``tag``: what the configured tag's ref points at in the cache, a ``Tag``
        object (annotated) or the commit itself (lightweight). Its raw bytes are
        those the signer signed. ``SourceRejected`` when it is not in the cache.
        """
        short = commit[:12]
        with self._read_lock:
            try:
                repo = self._open_reader(self._generation)
            except _DamageFound as found:
                raise self._damaged_error(found.reason) from None
            try:
                sha = repo.refs[Ref(self.config.ref.encode())] if tag else cache.full_id(commit)
                obj = repo.object_store[sha] if sha is not None else None
                if tag and sha is not None and cache.peel_to_commit(repo, sha) != commit.encode():
                    raise SourceUnavailable(
                        f"{self._what}: tag {self.config.tag!r} moved while it was checked; "
                        "the next poll checks it again"
                    )
            except SourceError:
                raise
            except KeyError:
                obj = None
            except Exception as exc:
                reason = cache.damage_in(repo, exc)
                if reason is None:
                    raise
                cache.forget_frames(exc)
                self._found_damage(reason, "signed_object")
                raise self._damaged_error(reason) from None
        if not isinstance(obj, Commit | Tag):
            raise SourceRejected(
                f"{self._what}: commit {short} is not in the cache; fetch it first"
            )
        return obj

    def is_ancestor(self, ancestor: str, commit: str) -> bool | None:
        """Whether ``ancestor`` is ``commit`` or an ancestor of it, from the cache alone.

        Both are full 40-hex commit ids. True: ``commit`` descends from
        ``ancestor`` (a fast-forward); False: both are in the cache and it does
        not (a force-push or reset rewrote the history); None: unknown, because
        either is not a commit in the cache (or is not a full id). Reads only
        the commits between the two, or down to where their histories split
        (see :func:`cache.is_ancestor`); blocking, so call it from a worker
        thread for long histories. A damaged cache raises ``SourceUnavailable``
        (remembered: the next fetch rebuilds it).
        """
        older, newer = cache.full_id(ancestor), cache.full_id(commit)
        if older is None or newer is None:
            return None
        with self._read_lock:
            if not self.path.is_dir():
                return None
            try:
                repo = self._open_reader(self._generation)
            except _DamageFound as found:
                raise self._damaged_error(found.reason) from None
            try:
                return cache.is_ancestor(repo, older, newer)
            except Exception as exc:
                reason = cache.damage_in(repo, exc)
                if reason is None:
                    raise
                cache.forget_frames(exc)
            self._found_damage(reason, "is_ancestor")
        raise self._damaged_error(reason)

    def _damaged_error(self, reason: str) -> SourceUnavailable:
        return SourceUnavailable(
            f"{self._what}: the cache at {self.path} is damaged ({reason}); "
            "the next fetch rebuilds it"
        )

    def _cached_tree(self, key: _TreeKey) -> dict[str, bytes] | None:
        """A read of the last commit again, or below a prefix read with the same filter."""
        commit, parts, suffixes = key
        if commit != self._trees_commit:
            return None
        found = self._trees.get(key)
        if found is not None:
            return found
        base = "/".join(parts)
        for depth in range(len(parts)):
            above = self._trees.get((commit, parts[:depth], suffixes))
            if above is None:
                continue
            below = {p: c for p, c in above.items() if p == base or p.startswith(base + "/")}
            if below:  # else read: the path may be missing, a symlink, or hidden
                return below
        return None

    def _remember_tree(self, key: _TreeKey, files: dict[str, bytes]) -> None:
        if key[0] != self._trees_commit:
            self._trees, self._trees_commit, self._trees_bytes = {}, key[0], 0
        size = sum(len(content) for content in files.values())
        if self._trees_bytes + size <= _TREE_CACHE_BYTES:
            self._trees[key] = files
            self._trees_bytes += size

    def _close_reader(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            reader.close()

    def close(self) -> None:
        """Release the cache repository's file handles and the kept remote (both reopen later)."""
        kept, self._kept = self._kept, None
        if kept is not None:
            close_remote(kept[1])
        with self._read_lock:
            self._close_reader()
            self._trees, self._trees_commit, self._trees_bytes = {}, None, 0


def _os_hint(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "check that the state directory is writable"
    return "the fetch will be retried"


def _heads(refs: Mapping[Ref, ObjectID]) -> dict[Ref, ObjectID]:
    return {n: s for n, s in refs.items() if n.startswith(b"refs/heads/")}


def _names(refs: Mapping[Ref, ObjectID], prefix: bytes) -> str:
    names = sorted(
        n[len(prefix) :].decode("utf-8", "replace")
        for n in refs
        if n.startswith(prefix) and not n.endswith(b"^{}")
    )
    if not names:
        return "none"
    shown = ", ".join(names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def _cache_key(url: str) -> str:
    """The URL without credentials, so rotating a password keeps the cache."""
    return strip_userinfo(url)
