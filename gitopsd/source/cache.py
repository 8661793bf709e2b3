"""The on-disk cache of a Git source: one bare repository per source, reused across restarts.

A fetch only downloads what the cache lacks, which works only if the server
learns what the cache holds. Dulwich offers just ``refs/heads/*`` as "haves",
so :class:`CacheRepo` offers every ref it holds (branches and tags, peeled to
commits) and the fetch stores what it fetched under the remote's own ref name.

The cache only ever holds data that can be fetched again, so it is treated as
disposable: :func:`open_cache` raises :class:`CacheDamaged` for anything that
is not a readable repository (a crash mid-write, a truncated pack, a file
where the directory should be) and :func:`rebuild` moves it aside for a fresh
clone. A daemon and a CLI run may share one state directory, so every writer
holds :class:`CacheLock` (``flock`` on ``<cache>.lock`` beside the cache).

This module also finds commits by (abbreviated) id, reads the files of a
directory at a commit straight from the object store (no working tree, never
following symlinks or submodules), and repacks when fetches have piled up packs.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shutil
import stat
import struct
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType

import structlog
from dulwich.errors import (
    ApplyDeltaError,
    ChecksumMismatch,
    FileFormatException,
    NotGitRepository,
    ObjectMissing,
    WrongObjectException,
)
from dulwich.object_store import ObjectStoreGraphWalker
from dulwich.objects import S_ISGITLINK, Blob, Commit, ObjectID, Tree
from dulwich.pack import load_pack_index
from dulwich.refs import Ref
from dulwich.repo import Repo

log = structlog.get_logger(__name__)

REPACK_AFTER_PACKS = 50
"""Repack the cache once it holds more packs than this (each fetch adds one)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_HEX = re.compile(r"[0-9a-fA-F]{4,40}")

DAMAGE: tuple[type[BaseException], ...] = (
    ChecksumMismatch,
    FileFormatException,  # ObjectFormatException, PackedRefsException
    WrongObjectException,
    ApplyDeltaError,
    ObjectMissing,
    NotGitRepository,
    AssertionError,  # dulwich asserts on truncated packs and malformed refs
    ValueError,
    KeyError,  # an object a ref or tree names is missing
    zlib.error,
    struct.error,
)
"""What dulwich raises when the cache's files are not a consistent repository.

Caught only around reads and writes of the cache itself, never around network
calls (where a ``ValueError`` is the remote's fault). A general ``OSError``
(``EMFILE``, ``EACCES``) is not in the list: the files may be fine.
"""


class CacheDamaged(Exception):
    """The cache is not a readable repository; :func:`rebuild` it and fetch again."""


def describe(exc: BaseException) -> str:
    """A one-line description of a dulwich failure, for logs and messages."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def damage_is_rebuild() -> Iterator[None]:
    """Turn dulwich's corruption errors raised in the block into :class:`CacheDamaged`."""
    try:
        yield
    except DAMAGE as exc:
        raise CacheDamaged(describe(exc)) from exc


class CacheRepo(Repo):
    """A bare cache repository that offers all of its refs as haves when fetching.

    ``haves`` may be set before a fetch (see :func:`local_commits`) so the
    refs are read, and corruption found, before any network traffic.
    """

    haves: list[ObjectID] | None = None

    def get_graph_walker(self, heads: list[ObjectID] | None = None) -> ObjectStoreGraphWalker:
        if heads is None:
            heads = self.haves if self.haves is not None else local_commits(self)
        return super().get_graph_walker(heads)


def local_commits(repo: Repo) -> list[ObjectID]:
    """The commits every local ref (branch or tag) points at, tags peeled, without duplicates."""
    commits: dict[ObjectID, None] = {}
    for name, sha in repo.refs.as_dict().items():
        if name == b"HEAD" or sha not in repo.object_store:
            continue
        peeled = peel_to_commit(repo, sha)
        if peeled is not None:
            commits[peeled] = None
    return list(commits)


def peel_to_commit(repo: Repo, sha: ObjectID) -> ObjectID | None:
    """The commit a ref value points at (through annotated tags), or None if it is not a commit."""
    _unpeeled, peeled = repo.object_store.peel(sha)
    return peeled.id if isinstance(peeled, Commit) else None


def cache_dir(cache_root: Path, name: str, url: str) -> Path:
    """``cache_root/<name>-<hash of url>``: stable across restarts, new when the URL changes."""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]
    safe = _UNSAFE.sub("_", name).strip("._") or "source"
    return cache_root / f"{safe}-{digest}"


# --- opening, checking and rebuilding ---------------------------------------------------------


def open_cache(path: Path, *, create: bool = True) -> CacheRepo:
    """Open the bare cache repository at ``path``, creating it (atomically) if needed.

    Raise :class:`CacheDamaged` if ``path`` is not a readable repository, and
    ``OSError`` (the cache may be fine) if the operating system refused.
    """
    if create and not os.path.lexists(path):
        _create(path)
    if not path.is_dir():
        raise CacheDamaged(f"{path} is not a directory")
    with damage_is_rebuild():
        return CacheRepo(str(path))


def rebuild(path: Path) -> Path | None:
    """Replace the cache at ``path`` with an empty repository; return where the old one went.

    A directory is moved aside to ``<path>.broken`` (replacing an older one, so
    at most one copy is kept for inspection); a file or symlink is removed.
    Call it only while holding the :class:`CacheLock`.
    """
    aside: Path | None = None
    if path.is_symlink() or (os.path.lexists(path) and not path.is_dir()):
        path.unlink()
    elif path.exists():
        aside = path.with_name(path.name + ".broken")
        _remove(aside)
        os.rename(path, aside)
    _create(path)
    return aside


def _remove(path: Path) -> None:
    if path.is_symlink() or (os.path.lexists(path) and not path.is_dir()):
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        Repo.init_bare(str(tmp)).close()
        os.rename(tmp, path)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not path.exists():
            raise


def find_damage(repo: Repo) -> str | None:
    """Why the cache is damaged, or None: checksums of every pack and index, every ref.

    Reads every pack in full: for after a failure whose cause is unclear, not
    for every fetch.
    """
    try:
        for pack in repo.object_store.packs:
            pack.index.check()
            pack.data.check()
            pack.check_length_and_checksum()
        local_commits(repo)
    except DAMAGE as exc:
        return describe(exc)
    except OSError:
        return None  # the files could not be read just now, which is not damage
    return None


_STALE_PATTERNS = (
    "refs/**/*.lock",
    "*.lock",  # HEAD.lock, packed-refs.lock, config.lock
    "objects/tmp_pack_*",  # a thin pack being completed
    "objects/incoming-*",  # a received pack spooled to disk
    "objects/pack/tmp*",  # a pack being written
)


def remove_stale_files(path: Path, max_age: float) -> list[str]:
    """Delete lock and temporary files older than ``max_age`` seconds that a crash left behind.

    A ref's ``.lock`` file makes every later update of that ref fail, so an
    interrupted fetch would otherwise block the source for good. Call it only
    while holding the :class:`CacheLock`. Returns the removed paths, relative.
    """
    removed: list[str] = []
    cutoff = time.time() - max_age
    for pattern in _STALE_PATTERNS:
        for found in path.glob(pattern):
            try:
                if found.is_file() and found.stat().st_mtime < cutoff:
                    found.unlink()
                    removed.append(found.relative_to(path).as_posix())
            except FileNotFoundError:
                continue
    return removed


# --- the cross-process lock -------------------------------------------------------------------


class CacheLock:
    """An exclusive ``flock`` on ``<cache>.lock``, beside the cache directory.

    Serialises fetches, rebuilds and repacks between processes sharing a state
    directory (and between :class:`GitSource` instances in one process: each
    holds its own open file). The lock file is never deleted, so two processes
    always lock the same inode; the kernel releases the lock if its holder dies.
    """

    def __init__(self, cache: Path) -> None:
        self.path = cache.with_name(cache.name + ".lock")
        self._fd: int | None = None

    def acquire(self, deadline: float | None) -> bool:
        """Take the lock, waiting until ``deadline`` (monotonic; None: one try); True if held."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        delay = 0.002
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise
                    left = -1.0 if deadline is None else deadline - time.monotonic()
                    if left <= 0:
                        os.close(fd)
                        return False
                    time.sleep(min(delay, left))  # flock has no timeout: poll, backing off
                    delay = min(delay * 2, 0.05)
                    continue
                self._fd = fd
                return True
        except BaseException:
            os.close(fd)
            raise

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor releases the flock

    def __enter__(self) -> CacheLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


# --- commits ----------------------------------------------------------------------------------


class AmbiguousCommit(Exception):
    """An abbreviated commit id matches more than one commit."""


def find_commit(repo: Repo, commit: str) -> ObjectID | None:
    """The full id of the commit ``commit`` (full or abbreviated hex) if the cache has it."""
    if not _HEX.fullmatch(commit):
        return None
    prefix = commit.lower().encode("ascii")
    if len(prefix) == 40:
        candidates = [ObjectID(prefix)] if ObjectID(prefix) in repo.object_store else []
    else:
        candidates = list(repo.object_store.iter_prefix(prefix))
    commits = [c for c in dict.fromkeys(candidates) if isinstance(repo.object_store[c], Commit)]
    if len(commits) > 1:
        raise AmbiguousCommit(commit)
    return commits[0] if commits else None


# --- reading files ----------------------------------------------------------------------------


class PathNotFound(KeyError):
    """The requested path does not exist in the commit's tree."""


@dataclass(frozen=True)
class Unfollowed:
    """A symlink or submodule met while reading a tree: never followed, always reported."""

    path: str
    kind: str  # "symlink" or "submodule"


class NotFollowed(Exception):
    """The path to read is, or holds, symlinks or submodules (see :func:`not_followed_text`)."""

    def __init__(self, entries: list[Unfollowed]) -> None:
        super().__init__(not_followed_text(entries))
        self.entries = entries


_SHOWN = 5


def not_followed_text(entries: list[Unfollowed]) -> str:
    """``'a/b.yaml' is a symlink, ...: symlinks/submodules are not followed; ...``."""
    shown = ", ".join(f"{display(e.path)!r} is a {e.kind}" for e in entries[:_SHOWN])
    more = f" and {len(entries) - _SHOWN} more" if len(entries) > _SHOWN else ""
    return f"{shown}{more}: symlinks/submodules are not followed; commit the file itself"


def display(path: str) -> str:
    """``path`` safe to print: bytes that are not UTF-8 (surrogate escapes) as ``\\xNN``."""
    try:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return path.encode("utf-8", "backslashreplace").decode("utf-8")


def normalise_prefix(prefix: str) -> tuple[str, ...]:
    """Split a repository-relative path into parts; ``""``, ``"."`` and ``"/"`` are the root."""
    parts = tuple(p for p in PurePosixPath(prefix.strip("/") or ".").parts if p not in (".", ""))
    if ".." in parts:
        raise ValueError(f"path {prefix!r} must stay inside the repository (no '..')")
    return parts


def may_hold_manifests(name: str, suffixes: tuple[str, ...] | None) -> bool:
    """Whether a symlink called ``name`` must be reported rather than passed over.

    A link to a manifest (``svc.yaml``), or one that may be a directory (no
    suffix), could hide resources, so it is reported; a ``README.md`` link is
    not read anyway.
    """
    if suffixes is None:
        return True
    return name.lower().endswith(suffixes) or "." not in name


def wanted(path: str, suffixes: tuple[str, ...] | None) -> bool:
    """Whether ``read_tree`` with ``suffixes`` returns the regular file ``path``.

    Without ``suffixes`` every file; with them, files whose name ends with one
    of them (case-insensitive) and that have no hidden (``.``-prefixed) part.
    """
    if suffixes is None:
        return True
    if any(part.startswith(".") for part in path.split("/")):
        return False
    return path.lower().endswith(suffixes)


def read_tree(
    repo: Repo, commit: ObjectID, prefix: str, *, suffixes: tuple[str, ...] | None = None
) -> dict[str, bytes]:
    """The regular files below ``prefix`` at ``commit``, keyed by repository-relative POSIX path.

    ``prefix`` may also name a single file. With ``suffixes`` only the files
    :func:`wanted` accepts are read (their contents are the expensive part);
    hidden directories are not even listed. Raise :class:`PathNotFound` for a
    missing path and :class:`NotFollowed` if the path is a symlink or
    submodule or holds any outside hidden directories: their blobs are not file
    contents, and following them would read what the commit does not hold.
    """
    obj = repo.object_store[commit]
    if not isinstance(obj, Commit):
        raise TypeError(f"{commit.decode()} is not a commit")
    parts = normalise_prefix(prefix)
    tree = repo.object_store[obj.tree]
    assert isinstance(tree, Tree)
    for i, part in enumerate(parts):
        here = "/".join(parts[: i + 1])
        try:
            mode, sha = tree[part.encode("utf-8", "surrogateescape")]
        except KeyError:
            raise PathNotFound("/".join(parts)) from None
        if S_ISGITLINK(mode):
            raise NotFollowed([Unfollowed(here, "submodule")])
        if stat.S_ISLNK(mode):
            raise NotFollowed([Unfollowed(here, "symlink")])
        if stat.S_ISDIR(mode):
            child = repo.object_store[sha]
            assert isinstance(child, Tree)
            tree = child
        elif stat.S_ISREG(mode) and i == len(parts) - 1:
            if not wanted(here, suffixes):
                return {}
            blob = repo.object_store[sha]
            assert isinstance(blob, Blob)
            return {here: blob.as_raw_string()}
        else:
            raise PathNotFound("/".join(parts))
    base = "/".join(parts)
    hidden = any(p.startswith(".") for p in parts)
    if hidden and suffixes is not None:
        return {}
    files: dict[str, bytes] = {}
    unfollowed: list[Unfollowed] = []
    _collect(repo, tree, base, hidden, suffixes, files, unfollowed)
    if unfollowed:
        raise NotFollowed(unfollowed)
    return files


def _collect(
    repo: Repo,
    tree: Tree,
    base: str,
    hidden: bool,
    suffixes: tuple[str, ...] | None,
    out: dict[str, bytes],
    unfollowed: list[Unfollowed],
) -> None:
    for entry in tree.iteritems():
        name = entry.path.decode("utf-8", "surrogateescape")
        path = f"{base}/{name}" if base else name
        is_hidden = hidden or name.startswith(".")
        if S_ISGITLINK(entry.mode):
            if not is_hidden:  # hidden paths are never manifests
                unfollowed.append(Unfollowed(path, "submodule"))
        elif stat.S_ISLNK(entry.mode):
            if not is_hidden and may_hold_manifests(name, suffixes):
                unfollowed.append(Unfollowed(path, "symlink"))
        elif stat.S_ISDIR(entry.mode):
            if is_hidden and suffixes is not None:
                continue
            sub = repo.object_store[entry.sha]
            assert isinstance(sub, Tree)
            _collect(repo, sub, path, is_hidden, suffixes, out, unfollowed)
        elif stat.S_ISREG(entry.mode) and wanted(path, suffixes):
            out[path] = repo.object_store[entry.sha].as_raw_string()


# --- packs ------------------------------------------------------------------------------------


def pack_names(path: Path) -> set[str]:
    """The complete packs (a ``.pack`` with its ``.idx``) of the cache at ``path``, by name.

    Listing the directory is cheap; dulwich's ``Pack.name()`` hashes the index.
    """
    try:
        names = set(os.listdir(path / "objects" / "pack"))
    except FileNotFoundError:
        return set()
    return {n[: -len(".pack")] for n in names if n.endswith(".pack") and n[:-5] + ".idx" in names}


def count_objects(repo: Repo, packs: set[str]) -> int:
    """How many objects the named packs of ``repo`` hold (from their index headers)."""
    total = 0
    pack_dir = Path(repo.path) / "objects" / "pack"
    for name in packs:
        index = load_pack_index(pack_dir / f"{name}.idx", repo.object_store.object_format)
        try:
            total += len(index)
        finally:
            index.close()
    return total


def maybe_repack(repo: Repo, threshold: int = REPACK_AFTER_PACKS) -> bool:
    """Fold all packs (and loose objects) into one once there are more than ``threshold``.

    Dulwich's repack writes the new pack before deleting the old ones, and
    readers holding the old packs re-scan the pack directory when one
    disappears, so a concurrent ``read_tree`` keeps working. It holds every
    object in memory while it runs: fine for configuration repositories.
    """
    if len(pack_names(Path(repo.path))) <= threshold:
        return False
    repo.refs.pack_refs(all=True)
    repo.object_store.repack()
    return True


def set_ref(repo: Repo, name: bytes, sha: ObjectID) -> None:
    """Point the cache's ref ``name`` at ``sha`` (so the next fetch offers it as a have)."""
    try:
        current = repo.refs[Ref(name)]
    except KeyError:
        current = None
    if current != sha:
        repo.refs[Ref(name)] = sha
