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

The blocking dulwich work runs in a worker thread under ``config.timeout``.
Failures are :class:`~gitopsd.errors.SourceUnavailable` when a retry may help
and :class:`~gitopsd.errors.SourceRejected` when a human must act; messages
name the source and its URL with secrets redacted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import anyio
import anyio.to_thread
import structlog
from dulwich.client import HTTPProxyUnauthorized, HTTPUnauthorized
from dulwich.errors import GitProtocolError, NotGitRepository
from dulwich.objects import ObjectID
from dulwich.refs import Ref
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from gitopsd.config import SourceConfig
from gitopsd.errors import SourceRejected, SourceUnavailable
from gitopsd.model import Revision
from gitopsd.source import cache
from gitopsd.source.auth import (
    Credentials,
    Transport,
    redact_url,
    resolve_credentials,
    strip_userinfo,
    transport_of,
)
from gitopsd.source.remote import Remote, classify, close_remote, open_remote

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

_Selector = Callable[[Mapping[Ref, ObjectID]], Mapping[Ref, ObjectID]]
"""Picks the refs to fetch from the advertisement the fetch received."""


@dataclass(frozen=True)
class FetchStats:
    """What one :meth:`GitSource.fetch` did.

    ``fetched`` is False when the cache already had the commit (no objects
    were requested); ``objects`` counts the objects in the packs the fetch
    wrote (including bases added to complete a thin pack).
    """

    revision: Revision
    fetched: bool
    objects: int
    duration: float


class GitSource:
    """One configured Git source, with its cache under ``cache_root``.

    Safe to use from one event loop: concurrent ``fetch`` calls are serialised.
    ``read_tree`` may be called from any thread.
    """

    def __init__(
        self,
        config: SourceConfig,
        cache_root: Path,
        *,
        repack_after: int = cache.REPACK_AFTER_PACKS,
    ) -> None:
        self.config = config
        self.path = cache.cache_dir(cache_root, config.name, _cache_key(config.url))
        self.last_fetch: FetchStats | None = None
        self._repack_after = repack_after
        self._what = f"source {config.name!r} ({redact_url(config.url)})"
        self._fetch_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._reader: cache.CacheRepo | None = None

    # -- fetch -------------------------------------------------------------

    async def fetch(self) -> Revision:
        """Resolve the configured ref on the remote, fetch if the cache lacks it, return it."""
        timeout = self.config.timeout
        deadline = time.monotonic() + timeout
        try:
            with anyio.fail_after(timeout):
                stats = await anyio.to_thread.run_sync(
                    self._fetch_sync, deadline, abandon_on_cancel=True
                )
        except TimeoutError:
            raise SourceUnavailable(
                f"{self._what}: no answer within {timeout:g}s "
                f"(sources[{self.config.name}].timeout); the fetch will be retried"
            ) from None
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
            duration=round(stats.duration, 4),
        )
        return rev

    def _fetch_sync(self, deadline: float) -> FetchStats:
        started = time.monotonic()
        if not self._fetch_lock.acquire(timeout=max(0.0, deadline - started)):
            raise SourceUnavailable(f"{self._what}: the previous fetch is still running")
        try:
            try:
                transport = transport_of(self.config.url)
            except ValueError as exc:
                raise SourceRejected(
                    f"{self._what}: {exc}; sources[{self.config.name}].url must be a path, "
                    "file://, git://, http(s)://, ssh:// or user@host:path URL"
                ) from None
            creds = resolve_credentials(self.config, transport)
            try:
                repo = cache.open_cache(self.path)
            except OSError as exc:
                raise SourceUnavailable(
                    f"{self._what}: cannot open the cache at {self.path}: "
                    f"{exc.strerror or exc}; check that the state directory is writable"
                ) from None
            with repo:
                commit, fetched, objects = self._sync(repo, transport, creds)
                if fetched:
                    self._housekeeping(repo)
        finally:
            self._fetch_lock.release()
        revision = Revision(self.config.name, self.config.ref, commit.decode("ascii"))
        return FetchStats(revision, fetched, objects, time.monotonic() - started)

    def _housekeeping(self, repo: cache.CacheRepo) -> None:
        """Repack once fetches have piled up packs; a failure here must not fail the fetch."""
        try:
            if cache.maybe_repack(repo, self._repack_after):
                log.info("source.repack", source=self.config.name, path=str(self.path))
        except Exception as exc:  # housekeeping only: the fetched data is already safe
            log.warning("source.repack_failed", source=self.config.name, error=str(exc))

    def _sync(
        self, repo: cache.CacheRepo, transport: Transport, creds: Credentials
    ) -> tuple[ObjectID, bool, int]:
        """Bring the cache up to date for the configured ref; return (commit, fetched, objects)."""
        cfg = self.config
        if cfg.commit:
            known = self._find_commit(repo, cfg.commit)
            if known is not None:  # commits never move: no need to ask the remote
                return known, False, 0
        try:
            remote = open_remote(cfg.url, transport, creds, cfg.timeout)
        except ValueError as exc:
            raise SourceRejected(
                f"{self._what}: cannot parse the URL: {exc}; check sources[{cfg.name}].url"
            ) from None
        try:
            refs = self._list_refs(remote, creds)
            if cfg.commit:
                return self._sync_commit(repo, remote, creds, refs, cfg.commit)
            return self._sync_ref(repo, remote, creds, refs, Ref(cfg.ref.encode("utf-8")))
        finally:
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

            got = self._download(repo, remote, creds, select)
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
        cache.set_ref(repo, ref, sha)
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
        got = self._download(repo, remote, creds, _heads)
        for name, sha in _heads(refs).items():
            if sha in repo.object_store:
                cache.set_ref(repo, name, sha)
        found = self._find_commit(repo, commit)
        if found is None:
            raise SourceRejected(
                f"{self._what}: commit {commit} is not on any branch of the remote "
                f"(branches: {_names(refs, b'refs/heads/')}); "
                f"check sources[{self.config.name}].commit"
            )
        return found, got is not None, got or 0

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
        except _NETWORK_ERRORS as exc:
            self._fail(exc, creds)
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
    ) -> int | None:
        """Fetch the objects of the refs ``select`` picks that the cache lacks.

        Return None if nothing was requested, else the number of objects written.
        """
        requested: list[ObjectID] = []

        def determine_wants(
            refs: Mapping[Ref, ObjectID], depth: int | None = None
        ) -> list[ObjectID]:
            chosen = select(refs)
            requested[:] = dict.fromkeys(s for s in chosen.values() if s not in repo.object_store)
            return list(requested)

        before = {p.name() for p in repo.object_store.packs}
        try:
            remote.client.fetch(
                remote.path.encode("utf-8"),
                repo,
                determine_wants=determine_wants,
                protocol_version=remote.fetch_protocol,
            )
        except _NETWORK_ERRORS as exc:
            self._fail(exc, creds)
        if not requested:
            return None
        return sum(len(p) for p in repo.object_store.packs if p.name() not in before)

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

    def _fail(self, exc: BaseException, creds: Credentials) -> NoReturn:
        raise classify(exc, self._what, creds, f"sources[{self.config.name}].url") from None

    # -- read --------------------------------------------------------------

    def read_tree(self, commit: str, prefix: str) -> dict[str, bytes]:
        """Every file below ``prefix`` (``""`` or ``"."``: the whole repository) at ``commit``.

        Keys are repository-relative POSIX paths (``apps/web/base/service.yaml``).
        ``commit`` must have been fetched. A missing path raises ``SourceRejected``.
        """
        with self._read_lock:
            if self._reader is None:
                if not self.path.exists():
                    raise SourceRejected(f"{self._what}: nothing fetched yet; call fetch() first")
                self._reader = cache.open_cache(self.path)
            repo = self._reader
            short = commit[:7]
            try:
                found = cache.find_commit(repo, commit)
            except cache.AmbiguousCommit:
                found = None
            if found is None:
                raise SourceRejected(
                    f"{self._what}: commit {short} is not in the cache; fetch it first"
                )
            try:
                return cache.read_tree(repo, found, prefix)
            except cache.PathNotFound:
                shown = "/".join(cache.normalise_prefix(prefix))
                raise SourceRejected(
                    f"{self._what}: path {shown!r} does not exist at commit {short}"
                ) from None
            except ValueError as exc:
                raise SourceRejected(f"{self._what}: {exc}") from None

    def close(self) -> None:
        """Release the cache repository's file handles (a later call reopens it)."""
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None


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
