"""The on-disk cache of a Git source: one bare repository per source, reused across restarts.

A fetch only downloads what the cache lacks, which works only if the server
learns what the cache holds. Dulwich offers just ``refs/heads/*`` as "haves",
so :class:`CacheRepo` offers every ref it holds (branches and tags, peeled to
commits) and the fetch stores what it fetched under the remote's own ref name.
This module also finds commits by (abbreviated) id, reads the files of a
directory at a commit straight from the object store (no working tree), and
repacks when fetches have piled up packs.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path, PurePosixPath

import structlog
from dulwich.errors import NotGitRepository
from dulwich.object_store import ObjectStoreGraphWalker
from dulwich.objects import Blob, Commit, ObjectID, Tree
from dulwich.refs import Ref
from dulwich.repo import Repo

log = structlog.get_logger(__name__)

REPACK_AFTER_PACKS = 50
"""Repack the cache once it holds more packs than this (each fetch adds one)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_HEX = re.compile(r"[0-9a-fA-F]{4,40}")


class CacheRepo(Repo):
    """A bare cache repository that offers all of its refs as haves when fetching."""

    def get_graph_walker(self, heads: list[ObjectID] | None = None) -> ObjectStoreGraphWalker:
        if heads is None:
            heads = local_commits(self)
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


def open_cache(path: Path) -> CacheRepo:
    """Open the bare cache repository at ``path``, creating it (atomically) if needed.

    A directory that is not a readable repository (a crash during creation,
    manual meddling) is replaced: it only ever holds data we can fetch again.
    """
    if not path.exists():
        _create(path)
    try:
        return CacheRepo(str(path))
    except (NotGitRepository, OSError, ValueError) as exc:
        log.warning("source.cache_rebuilt", path=str(path), reason=str(exc))
        shutil.rmtree(path, ignore_errors=True)
        _create(path)
        return CacheRepo(str(path))


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


class AmbiguousCommit(ValueError):
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


class PathNotFound(KeyError):
    """The requested path does not exist in the commit's tree."""


def normalise_prefix(prefix: str) -> tuple[str, ...]:
    """Split a repository-relative path into parts; ``""``, ``"."`` and ``"/"`` are the root."""
    parts = tuple(p for p in PurePosixPath(prefix.strip("/") or ".").parts if p not in (".", ""))
    if ".." in parts:
        raise ValueError(f"path {prefix!r} must stay inside the repository (no '..')")
    return parts


def read_tree(repo: Repo, commit: ObjectID, prefix: str) -> dict[str, bytes]:
    """Every regular file below ``prefix`` at ``commit``, keyed by repository-relative POSIX path.

    ``prefix`` may also name a single file. Symlinks and submodules are skipped:
    their blobs are not file contents. Raise :class:`PathNotFound` for a
    missing path.
    """
    obj = repo.object_store[commit]
    if not isinstance(obj, Commit):
        raise TypeError(f"{commit.decode()} is not a commit")
    parts = normalise_prefix(prefix)
    tree = repo.object_store[obj.tree]
    assert isinstance(tree, Tree)
    for i, part in enumerate(parts):
        try:
            mode, sha = tree[part.encode("utf-8")]
        except KeyError:
            raise PathNotFound("/".join(parts)) from None
        child = repo.object_store[sha]
        if isinstance(child, Tree):
            tree = child
        elif isinstance(child, Blob) and i == len(parts) - 1 and stat.S_ISREG(mode):
            return {"/".join(parts): child.as_raw_string()}
        else:
            raise PathNotFound("/".join(parts))
    files: dict[str, bytes] = {}
    _collect(repo, tree, "/".join(parts), files)
    return files


def _collect(repo: Repo, tree: Tree, base: str, out: dict[str, bytes]) -> None:
    for entry in tree.iteritems():
        name = entry.path.decode("utf-8", "surrogateescape")
        path = f"{base}/{name}" if base else name
        if stat.S_ISDIR(entry.mode):
            sub = repo.object_store[entry.sha]
            assert isinstance(sub, Tree)
            _collect(repo, sub, path, out)
        elif stat.S_ISREG(entry.mode):
            out[path] = repo.object_store[entry.sha].as_raw_string()


def pack_count(repo: Repo) -> int:
    """How many pack files the cache holds."""
    return len(repo.object_store.packs)


def maybe_repack(repo: Repo, threshold: int = REPACK_AFTER_PACKS) -> bool:
    """Fold all packs (and loose objects) into one once there are more than ``threshold``.

    Dulwich's repack writes the new pack before deleting the old ones, and
    readers holding the old packs re-scan the pack directory when one
    disappears, so a concurrent ``read_tree`` keeps working. It holds every
    object in memory while it runs: fine for configuration repositories.
    """
    if pack_count(repo) <= threshold:
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
