"""Where an app's files come from during one pass: a Git source, or a local directory.

Several apps usually share one repository; :class:`SourceSet` fetches each
source at most once per pass however many apps read from it, keeps the Git
caches open between passes, and reads only manifest files (the render layer
ignores the rest, and a repository may hold large binaries).

:class:`DirectorySource` (``--dir``) reads a working directory by the same rules
as the Git source reads a commit, so ``validate --dir`` sees what a sync would
see: symlinks and submodules are reported, never followed, and paths stay
inside the directory.

When a remote cannot be reached (:class:`~gitopsd.errors.SourceUnavailable`),
or with ``offline=True``, a Git source falls back to the commit its cache
last fetched for the ref, and the revision says so in ``Revision.stale``: the
apps go on with what Git said last (as Flux keeps its last artifact) and the
user is told it may be out of date.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import anyio
import anyio.to_thread
import structlog

from gitopsd.config import Config
from gitopsd.errors import SourceRejected, SourceUnavailable
from gitopsd.humanize import age
from gitopsd.manifests.loader import MANIFEST_SUFFIXES
from gitopsd.model import Revision
from gitopsd.source import cache
from gitopsd.source.git import CachedRevision, GitSource
from gitopsd.source.verify import Verifier

log = structlog.get_logger(__name__)


class Source(Protocol):
    async def fetch(self) -> Revision: ...

    def cached_revision(self) -> CachedRevision: ...

    def is_ancestor(self, ancestor: str, commit: str) -> bool | None: ...

    def commit_message(self, commit: str) -> str: ...

    def read_tree(
        self, commit: str, prefix: str, *, suffixes: tuple[str, ...] | None = None
    ) -> dict[str, bytes]: ...

    def close(self) -> None: ...


class DirectorySource:
    """A working directory used instead of Git (``--dir``): for checks before a commit.

    ``read_tree`` follows :func:`gitopsd.source.cache.read_tree`: a symlink, or a
    directory holding ``.git`` (a submodule or nested repository), on or below
    the path raises ``SourceRejected`` unless it is hidden; ``.git`` is never
    read; ``..`` is refused.
    """

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root
        self._what = f"source {name!r} ({root})"

    async def fetch(self) -> Revision:
        if not self.root.is_dir():
            raise SourceRejected(f"source {self.name!r}: {self.root} is not a directory")
        return Revision(source=self.name, ref=str(self.root), commit="worktree")

    def cached_revision(self) -> CachedRevision:
        return CachedRevision(Revision(self.name, str(self.root), "worktree"), None)

    def is_ancestor(self, ancestor: str, commit: str) -> bool | None:
        return None  # a working directory has no history

    def commit_message(self, commit: str) -> str:
        return ""

    def read_tree(
        self, commit: str, prefix: str, *, suffixes: tuple[str, ...] | None = None
    ) -> dict[str, bytes]:
        try:
            parts = cache.normalise_prefix(prefix)
        except ValueError as exc:
            raise SourceRejected(f"{self._what}: {exc}") from None
        current = self.root
        for i, part in enumerate(parts):
            here = "/".join(parts[: i + 1])
            current = current / part
            try:
                mode = os.lstat(current).st_mode
            except (FileNotFoundError, NotADirectoryError):
                mode = 0
            if stat.S_ISLNK(mode):
                self._not_followed([cache.Unfollowed(here, "symlink")])
            if stat.S_ISDIR(mode) and part != ".git":
                if os.path.lexists(current / ".git"):
                    self._not_followed([cache.Unfollowed(here, "submodule")])
            elif stat.S_ISREG(mode) and i == len(parts) - 1:
                return {here: current.read_bytes()} if cache.wanted(here, suffixes) else {}
            else:
                shown = cache.display("/".join(parts))
                raise SourceRejected(f"{self._what}: path {shown!r} does not exist")
        hidden = any(p.startswith(".") for p in parts)
        if hidden and suffixes is not None:
            return {}
        files: dict[str, bytes] = {}
        unfollowed: list[cache.Unfollowed] = []
        _collect(current, "/".join(parts), hidden, suffixes, files, unfollowed)
        if unfollowed:
            self._not_followed(unfollowed)
        return files

    def _not_followed(self, entries: list[cache.Unfollowed]) -> None:
        raise SourceRejected(f"{self._what}: {cache.not_followed_text(entries)}")

    def close(self) -> None:
        pass


def _collect(
    directory: Path,
    base: str,
    hidden: bool,
    suffixes: tuple[str, ...] | None,
    out: dict[str, bytes],
    unfollowed: list[cache.Unfollowed],
) -> None:
    """The files below ``directory`` as the Git source reads a tree (see ``cache._collect``)."""
    with os.scandir(directory) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        if entry.name == ".git":
            continue
        path = f"{base}/{entry.name}" if base else entry.name
        is_hidden = hidden or entry.name.startswith(".")
        if entry.is_symlink():
            if not is_hidden and cache.may_hold_manifests(entry.name, suffixes):
                unfollowed.append(cache.Unfollowed(path, "symlink"))
        elif entry.is_dir(follow_symlinks=False):
            if is_hidden and suffixes is not None:
                continue
            if os.path.lexists(os.path.join(entry.path, ".git")):
                if not is_hidden:
                    unfollowed.append(cache.Unfollowed(path, "submodule"))
                continue
            _collect(Path(entry.path), path, is_hidden, suffixes, out, unfollowed)
        elif entry.is_file(follow_symlinks=False) and cache.wanted(path, suffixes):
            out[path] = Path(entry.path).read_bytes()


def _age(fetched_at: float | None) -> str:
    return "at an unknown time" if fetched_at is None else f"{age(fetched_at)} ago"


class SourceSet:
    """The sources of one configuration, fetched at most once per pass."""

    def __init__(
        self, config: Config, *, directory: Path | None = None, offline: bool = False
    ) -> None:
        self.offline = offline and directory is None
        self._sources: dict[str, Source] = {}
        for s in config.sources:
            self._sources[s.name] = (
                DirectorySource(s.name, directory)
                if directory is not None
                else GitSource(s, config.daemon.state_dir / "git", repair_reads=not self.offline)
            )
        self._locks = {name: anyio.Lock() for name in self._sources}
        # Signature checks of the sources with [sources.verify] (not for --dir: no commits).
        self._verifiers = {
            s.name: Verifier(s) for s in config.sources if s.verify and directory is None
        }
        self._pass: dict[str, Revision | BaseException] = {}

    def new_pass(self) -> None:
        """Forget this pass's revisions: the next ``revision`` call fetches again."""
        self._pass.clear()

    def get(self, name: str) -> Source:
        return self._sources[name]

    async def revision(self, name: str) -> Revision:
        async with self._locks[name]:
            if name not in self._pass:
                try:
                    self._pass[name] = await self._resolve(name)
                except Exception as exc:  # remembered so every app of the source reports it
                    self._pass[name] = exc
            found = self._pass[name]
        if isinstance(found, BaseException):
            raise found
        return found

    async def refresh(self, name: str) -> Revision:
        """Fetch ``name`` again now; later ``revision`` calls return what this found.

        Until it has, ``current`` and ``revision`` keep answering with the last result.
        """
        async with self._locks[name]:
            try:
                found: Revision | BaseException = await self._resolve(name)
            except Exception as exc:
                found = exc
            self._pass[name] = found
        if isinstance(found, BaseException):
            raise found
        return found

    def current(self, name: str) -> Revision | BaseException | None:
        """What the last fetch of ``name`` found, without fetching (None: not fetched yet)."""
        return self._pass.get(name)

    async def _resolve(self, name: str) -> Revision:
        revision = await self._found(name)
        verifier = self._verifiers.get(name)
        source = self._sources[name]
        if verifier is not None and isinstance(source, GitSource):
            # A commit whose signature does not verify is never handed to an app.
            await anyio.to_thread.run_sync(verifier.check, source, revision)
        return revision

    async def _found(self, name: str) -> Revision:
        source = self._sources[name]
        if self.offline:
            return await self._cached(name, "offline (--offline)")
        try:
            return await source.fetch()
        except SourceUnavailable as exc:
            try:
                return await self._cached(name, f"the remote is unreachable ({exc})")
            except (SourceRejected, SourceUnavailable):
                raise exc from None

    async def _cached(self, name: str, why: str) -> Revision:
        cached = await anyio.to_thread.run_sync(self._sources[name].cached_revision)
        rev = cached.revision
        stale = (
            f"{why}; using the last fetched commit {rev.commit[:12]} of {rev.ref} "
            f"(fetched {_age(cached.fetched_at)}), which may be stale"
        )
        log.warning("source.stale", source=name, commit=rev.commit, reason=why)
        return Revision(rev.source, rev.ref, rev.commit, stale=stale)

    def commit_message(self, name: str, commit: str) -> str:
        """The first line of a commit's message, when the source's cache has it."""
        return self._sources[name].commit_message(commit) if commit else ""

    async def is_ancestor(self, name: str, ancestor: str, commit: str) -> bool | None:
        """Whether ``ancestor`` is ``commit`` or before it in the history (None: unknown)."""
        source = self._sources[name]
        return await anyio.to_thread.run_sync(source.is_ancestor, ancestor, commit)

    def reader(self, name: str, commit: str) -> Callable[[str], Mapping[str, bytes]]:
        """A manifest reader for the render layer: only manifest files' contents are read."""
        source = self._sources[name]

        def read(prefix: str) -> Mapping[str, bytes]:
            return source.read_tree(commit, prefix, suffixes=MANIFEST_SUFFIXES)

        return read

    def close(self) -> None:
        for s in self._sources.values():
            s.close()
