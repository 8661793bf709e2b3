"""The on-disk cache of a Git source: one bare repository per source, reused across restarts.

A fetch only downloads what the cache lacks, which works only if the server
learns what the cache holds. Dulwich offers just ``refs/heads/*`` as "haves",
so :class:`CacheRepo` offers every ref it holds (branches and tags, peeled to
commits) and the fetch stores what it fetched under the remote's own ref name.

The cache only ever holds data that can be fetched again, so it is treated as
disposable: :func:`open_cache` raises :class:`CacheDamaged` for anything that
is not a readable repository (a crash mid-write, a truncated pack, a file
where the directory should be), :func:`damage_in` tells whether a failure
while reading means damaged files, and :func:`rebuild` moves the cache aside
for a fresh clone. A daemon and a CLI run may share one state directory, so
every writer holds :class:`CacheLock` (``flock`` on ``<cache>.lock`` beside the
cache), and lock and temporary files found inside the cache while holding it
are leftovers of a writer that died (:func:`remove_stale_files`).

Two small files beside the cache outlive the process that wrote them, both
replaced atomically (written to a temporary file, then renamed):

* ``<cache>.damaged`` (:func:`mark_damaged`): damage found while reading, with
  the reason and the identity of the damaged directory, so the next fetch (of
  any process) rebuilds the cache even if the damage is in objects the fetch
  does not touch. :func:`rebuild` removes it; a marker about a directory that
  was replaced since is ignored and removed (:func:`pending_damage`).
* ``<cache>.fetched.json`` (:func:`record_fetch`, :func:`last_fetch`): for each
  configured ref, the commit the last successful fetch resolved it to and when
  (epoch seconds), so an offline fallback can say how old its commit is.

This module also finds commits by (abbreviated) id, tells whether one commit
is an ancestor of another, reads the files of a directory at a commit straight
from the object store (no working tree, never following symlinks or
submodules), and repacks when fetches have piled up packs.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import struct
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
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
from dulwich.graph import find_merge_base
from dulwich.object_store import ObjectStoreGraphWalker
from dulwich.objects import S_ISGITLINK, Blob, Commit, ObjectID, Tree
from dulwich.pack import Pack, load_pack_index
from dulwich.refs import Ref
from dulwich.repo import Repo

log = structlog.get_logger(__name__)

REPACK_AFTER_PACKS = 50
"""Repack the cache once it holds more packs than this (each fetch adds one)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_HEX = re.compile(r"[0-9a-fA-F]{4,40}")
_FULL_ID = re.compile(r"[0-9a-fA-F]{40}")

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
(``EMFILE``, ``EACCES``) is not in the list: the files may be fine. Other
exceptions dulwich raises on damaged files (a corrupt index's fan-out table
gives ``TypeError`` or ``OverflowError``) are too general to list: see
:func:`damage_in`, which confirms them with the checksums.
"""


class CacheDamaged(Exception):
    """The cache is not a readable repository; :func:`rebuild` it and fetch again."""


def describe(exc: BaseException) -> str:
    """A one-line description of a dulwich failure, for logs and messages."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def damage_in(repo: Repo | None, exc: BaseException) -> str | None:
    """Why ``exc``, raised while reading or writing ``repo``, means its files are damaged; or None.

    One of :data:`DAMAGE` is damage. Any other exception raised inside dulwich
    (not an ``OSError``) is damage only if :func:`find_damage` confirms it
    (a checksum or a ref fails); an exception raised by gitopsd's own code is
    a bug, never damage. Call it only for failures of the cache itself.
    """
    if isinstance(exc, CacheDamaged):
        return str(exc)
    if isinstance(exc, DAMAGE):
        return describe(exc)
    if repo is None or isinstance(exc, OSError) or not _raised_in_dulwich(exc):
        return None
    found = find_damage(repo)
    return None if found is None else f"{describe(exc)} ({found})"


def _raised_in_dulwich(exc: BaseException) -> bool:
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(tb.tb_frame.f_globals.get("__name__", "")).startswith("dulwich.")


def forget_frames(exc: BaseException) -> None:
    """Clear the local variables of the finished frames in ``exc``'s tracebacks (and its causes').

    Dulwich reads packs through memory maps; a traceback that keeps a frame
    holding a view of a map makes closing the pack fail with ``BufferError``
    ("cannot close exported pointers exist"), which would hide the damage the
    exception reports. Call it before closing the repository the failure came from.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        todo += [current.__cause__, current.__context__]


@contextmanager
def damage_is_rebuild(repo: Repo | None = None) -> Iterator[None]:
    """Turn damage (see :func:`damage_in`) raised in the block into :class:`CacheDamaged`.

    With ``repo``, an unexpected dulwich failure is checked against the cache's
    checksums; other exceptions pass through unchanged.
    """
    try:
        yield
    except CacheDamaged:
        raise
    except Exception as exc:
        reason = damage_in(repo, exc)
        if reason is None:
            raise
        forget_frames(exc)
        raise CacheDamaged(reason) from exc


class _LimitedGraphWalker(ObjectStoreGraphWalker):
    """Offers at most ``limit`` haves (see :attr:`CacheRepo.haves_limit`)."""

    def __init__(self, walker: ObjectStoreGraphWalker, limit: int) -> None:
        self.__dict__.update(walker.__dict__)
        self._left = limit

    def next(self) -> ObjectID | None:
        if self._left <= 0:
            return None
        self._left -= 1
        return super().next()

    __next__ = next


class CacheRepo(Repo):
    """A bare cache repository that offers all of its refs as haves when fetching.

    ``haves`` may be set before a fetch (see :func:`local_commits`) so the
    refs are read, and corruption found, before any network traffic.
    ``haves_limit`` caps the commits offered: over smart HTTP dulwich reads
    and sends up to 256 of them in one request before the server can say it
    has the first (the cache's tip, for a fast-forward), each read from the
    packs.
    """

    haves: list[ObjectID] | None = None
    haves_limit: int | None = None

    def __init__(self, root: str) -> None:
        super().__init__(root)
        store = self.object_store
        update: Callable[[], list[Pack]] = store._update_pack_cache

        def update_and_remember_names() -> list[Pack]:
            new = update()
            for pack in new:
                _remember_name(pack)
            return new

        store._update_pack_cache = update_and_remember_names  # type: ignore[method-assign]

    def get_graph_walker(self, heads: list[ObjectID] | None = None) -> ObjectStoreGraphWalker:
        if heads is None:
            heads = self.haves if self.haves is not None else local_commits(self)
        walker = super().get_graph_walker(heads)
        if self.haves_limit is None:
            return walker
        return _LimitedGraphWalker(walker, self.haves_limit)

    def close(self) -> None:
        """Close the packs; never raise (a failure here would hide the one being handled)."""
        try:
            super().close()
        except BufferError as exc:  # a view of a pack's map is still alive (see forget_frames)
            log.warning("source.cache_close_failed", path=self.path, error=str(exc))


_PACK_NAMES: dict[tuple[str, int, int, int], bytes] = {}
_PACK_NAMES_KEPT = 512


def _remember_name(pack: Pack) -> None:
    """Make ``pack.name()`` hash the pack's index once per process, not on every fetch.

    Dulwich checks whether a fetched pack is already there by calling
    ``name()`` (a SHA-1 over every object id in the index) on every pack of
    the store, for every fetch: 55,000 ids of a large cache's main pack each
    time. An index file never changes once written, so its name is kept by
    the file's identity (path, inode, size, mtime).
    """
    compute = pack.name

    def name() -> bytes:
        try:
            st = os.stat(pack._basename + ".idx")
        except OSError:
            return compute()
        key = (pack._basename, st.st_ino, st.st_size, st.st_mtime_ns)
        found = _PACK_NAMES.get(key)
        if found is None:
            found = compute()
            if len(_PACK_NAMES) >= _PACK_NAMES_KEPT:
                _PACK_NAMES.clear()
            _PACK_NAMES[key] = found
        return found

    pack.name = name  # type: ignore[method-assign]


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


def dangling_refs(repo: Repo) -> list[str]:
    """Refs (not HEAD) whose object is missing from the store: objects were lost."""
    return [
        name.decode("utf-8", "replace")
        for name, sha in repo.refs.as_dict().items()
        if name != b"HEAD" and sha not in repo.object_store
    ]


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
    The damage marker (:func:`mark_damaged`) is removed last. Call it only
    while holding the :class:`CacheLock`.
    """
    aside: Path | None = None
    if path.is_symlink() or (os.path.lexists(path) and not path.is_dir()):
        path.unlink()
    elif path.exists():
        aside = path.with_name(path.name + ".broken")
        _remove(aside)
        os.rename(path, aside)
    _create(path)
    clear_damage(path)
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
        forget_frames(exc)
        return describe(exc)
    except OSError:
        return None  # the files could not be read just now, which is not damage
    return None


# --- damage found while reading, remembered beside the cache ----------------------------------


def identity(path: Path) -> str | None:
    """``device:inode`` of the directory at ``path`` (None if there is none).

    :func:`rebuild` creates a new directory, so a damage marker written about
    the old one can be told from one about the current cache.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}"


def damage_marker(path: Path) -> Path:
    """``<cache>.damaged``, beside the cache directory."""
    return path.with_name(path.name + ".damaged")


def mark_damaged(path: Path, reason: str, cache_identity: str | None) -> None:
    """Remember on disk that the cache at ``path`` (``cache_identity``) is damaged, and why.

    Atomic (a reader sees the old marker or the new one) and safe without the
    :class:`CacheLock`: a reader that finds damage need not wait for a fetch.
    Raise ``OSError`` if it cannot be written.
    """
    record = {"reason": reason, "cache": cache_identity, "at": time.time()}
    _write_atomically(damage_marker(path), json.dumps(record).encode("utf-8"), fsync=True)


def pending_damage(path: Path) -> str | None:
    """The reason :func:`mark_damaged` recorded for the cache now at ``path``, or None.

    A marker about a directory that has since been replaced (another process
    rebuilt the cache) is removed. A marker that cannot be parsed counts as
    damage: at worst the cache is cloned once more. Call it while holding the
    :class:`CacheLock`. Raise ``OSError`` if the marker exists but cannot be read.
    """
    marker = damage_marker(path)
    try:
        raw = marker.read_bytes()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(raw)
        reason = str(record["reason"])
        about = record.get("cache")
    except (ValueError, TypeError, KeyError, AttributeError):
        return f"unreadable damage marker {marker.name}"
    if about is not None and about != identity(path):
        clear_damage(path)
        return None
    return reason


def clear_damage(path: Path) -> None:
    """Remove the damage marker of the cache at ``path`` (if any)."""
    with suppress(FileNotFoundError):
        damage_marker(path).unlink()


# --- when each ref was last fetched -----------------------------------------------------------


@dataclass(frozen=True)
class FetchRecord:
    """What the last successful fetch resolved a configured ref to, and when (epoch seconds)."""

    commit: str
    at: float


def fetch_record_file(path: Path) -> Path:
    """``<cache>.fetched.json``, beside the cache directory."""
    return path.with_name(path.name + ".fetched.json")


def record_fetch(path: Path, ref: str, commit: str, at: float) -> None:
    """Record that a fetch resolved ``ref`` (a ref name, or the configured commit id) to ``commit``.

    Keeps the other refs' records (a cache is shared by configurations with the
    same name and URL). Call it while holding the :class:`CacheLock`; the file
    is replaced atomically, so readers need no lock. Raise ``OSError`` on failure.
    """
    target = fetch_record_file(path)
    records = _read_fetch_records(target)
    records[ref] = {"commit": commit, "at": at}
    data = json.dumps(records, sort_keys=True).encode("utf-8")
    _write_atomically(target, data, fsync=False, temp=target.with_name(target.name + ".tmp"))


def last_fetch(path: Path, ref: str) -> FetchRecord | None:
    """The record :func:`record_fetch` keeps for ``ref``, or None (none, or unreadable)."""
    found = _read_fetch_records(fetch_record_file(path)).get(ref)
    if not isinstance(found, dict):
        return None
    commit, at = found.get("commit"), found.get("at")
    if not isinstance(commit, str) or not isinstance(at, int | float) or isinstance(at, bool):
        return None
    return FetchRecord(commit, float(at))


def _read_fetch_records(target: Path) -> dict[str, object]:
    try:
        records = json.loads(target.read_bytes())
    except (OSError, ValueError):
        return {}  # missing or unreadable: the time of the fetch is unknown, nothing else
    return records if isinstance(records, dict) else {}


def _write_atomically(target: Path, data: bytes, *, fsync: bool, temp: Path | None = None) -> None:
    """Write ``target`` through a temporary file in its directory and a rename.

    ``temp`` names the temporary file (for writers serialised by the
    :class:`CacheLock`, so a crash leaves no more than one); else a unique one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if temp is None:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        tmp = Path(name)
    else:
        tmp = temp
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise


_STALE_PATTERNS = (
    "refs/**/*.lock",
    "*.lock",  # HEAD.lock, packed-refs.lock, config.lock
    "objects/??/*.lock",  # a loose object being written
    "objects/pack/*.lock",  # a pack index being written
    "objects/tmp_pack_*",  # a thin pack being completed
    "objects/incoming-*",  # a received pack spooled to disk
    "objects/pack/tmp*",  # a pack being written
)


def remove_stale_files(path: Path, max_age: float = 0.0) -> list[str]:
    """Delete the lock and temporary files that writers which died left in the cache.

    A ref's ``.lock`` file makes every later update of that ref fail, so an
    interrupted fetch would otherwise block the source for good. Call it only
    while holding the :class:`CacheLock`: every gitopsd writer (fetch, rebuild,
    repack) holds that lock while it writes, and the kernel releases it when
    its holder dies, so any such file found then is a leftover, whatever its
    age, and the default ``max_age`` of 0 removes them all. A positive
    ``max_age`` spares files younger than that many seconds, for caches that
    writers outside gitopsd (``git`` run by hand) may be using.
    Returns the removed paths, relative to ``path``.
    """
    removed: list[str] = []
    cutoff = time.time() - max_age
    for pattern in _STALE_PATTERNS:
        for found in path.glob(pattern):
            try:
                if found.is_file() and (max_age <= 0 or found.stat().st_mtime < cutoff):
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


def full_id(commit: str) -> ObjectID | None:
    """``commit`` as an object id if it is a full (40-hex) id, else None."""
    return ObjectID(commit.lower().encode("ascii")) if _FULL_ID.fullmatch(commit) else None


def is_ancestor(repo: Repo, ancestor: ObjectID, commit: ObjectID) -> bool | None:
    """Whether ``ancestor`` is ``commit`` or an ancestor of it; None if either is not cached.

    Uses dulwich's merge-base search (:func:`dulwich.graph.find_merge_base`):
    ``ancestor`` is an ancestor exactly when it is the only lowest common
    ancestor of the two. The search walks down from both commits, newest first,
    and stops as soon as every commit still to visit is below a common
    ancestor: for a fast-forward it reads the commits between the two, for a
    rewritten history those down to where the two lines split, not the whole
    history. Unlike ``can_fast_forward`` it does not prune by commit date, so
    a skewed clock cannot make it answer wrongly. A parent missing from the
    cache raises ``KeyError`` (damage: the cache always holds whole histories).
    """
    store = repo.object_store
    for sha in (ancestor, commit):
        if sha not in store or not isinstance(store[sha], Commit):
            return None
    if ancestor == commit:
        return True
    return find_merge_base(repo, [ancestor, commit]) == [ancestor]


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
