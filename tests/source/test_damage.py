"""Damaged objects in the Git cache are rebuilt, in the pass that finds them and after a restart.

Each test damages the cache of one process (a fetch, then ``close``) and uses
a new :class:`GitSource` on the same directory, as the next process would, the
way the engine does: ``fetch()`` and then ``read_tree(commit, prefix,
suffixes=MANIFEST_SUFFIXES)``. A fetch only downloads what the cache lacks, so
damage in a blob or tree is found only by the read: the read must rebuild and
fetch again itself, and the damage must be written down for the next process.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from support.gitserver import GIT, GitDaemon, GitRepo, git_env

from gitopsd.errors import SourceUnavailable
from gitopsd.manifests.loader import MANIFEST_SUFFIXES
from gitopsd.source import cache, git
from gitopsd.source.git import GitSource

from .helpers import fetch, make_source
from .sample import API_YAML, SERVICE_YAML, TASK_YAML

WEB = {
    "apps/web/base/service.yaml": SERVICE_YAML.encode(),
    "apps/web/base/task.yaml": TASK_YAML.encode(),
}
MANIFESTS = {**WEB, "apps/api/service.yaml": API_YAML.encode()}


def _pack(path: Path, ext: str) -> Path:
    (found,) = (path / "objects" / "pack").glob(f"*.{ext}")
    return found


def _flip_middle_of_pack(path: Path, repo: GitRepo) -> None:
    pack = _pack(path, "pack")
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.write_bytes(bytes(data))


def _truncate_pack(path: Path, repo: GitRepo) -> None:
    pack = _pack(path, "pack")
    os.truncate(pack, pack.stat().st_size - 30)


def _flip_middle_of_index(path: Path, repo: GitRepo) -> None:
    index = _pack(path, "idx")
    os.chmod(index, 0o644)
    data = bytearray(index.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the fan-out table of this small index
    index.write_bytes(bytes(data))


def _unpack(path: Path) -> None:
    """Turn the cache's one pack into loose objects (so one can be deleted)."""
    pack, index = _pack(path, "pack"), _pack(path, "idx")
    data = pack.read_bytes()
    pack.unlink()
    index.unlink()
    subprocess.run([GIT, "unpack-objects", "-q"], input=data, cwd=path, env=git_env(), check=True)


def _delete_object(path: Path, sha: str) -> None:
    loose = path / "objects" / sha[:2] / sha[2:]
    assert loose.is_file()
    loose.unlink()


def _missing_blob(path: Path, repo: GitRepo) -> None:
    _unpack(path)
    _delete_object(path, repo.git("rev-parse", "HEAD:apps/web/base/service.yaml"))


def _missing_tree(path: Path, repo: GitRepo) -> None:
    _unpack(path)
    _delete_object(path, repo.git("rev-parse", "HEAD:apps/web/base"))


DAMAGE = [_flip_middle_of_pack, _truncate_pack, _flip_middle_of_index, _missing_blob, _missing_tree]


@pytest.fixture
def daemon(git_root: Path, config_repo: GitRepo) -> Iterator[GitDaemon]:
    with GitDaemon(git_root) as served:
        yield served


def _damaged_cache(
    sources: list[GitSource], cache_root: Path, url: str, damage: Callable[..., None], repo: GitRepo
) -> GitSource:
    """Fetch in one "process", damage its cache, and return the source of the next process."""
    first = make_source(sources, cache_root, url)
    fetch(first)
    first.close()
    damage(first.path, repo)
    return make_source(sources, cache_root, url)


@pytest.mark.parametrize("damage", DAMAGE)
def test_damage_is_rebuilt_and_read_in_the_same_pass(
    damage: Callable[[Path, GitRepo], None],
    config_repo: GitRepo,
    daemon: GitDaemon,
    cache_root: Path,
    sources: list[GitSource],
) -> None:
    source = _damaged_cache(sources, cache_root, daemon.url("config"), damage, config_repo)

    with structlog.testing.capture_logs() as logs:
        rev = fetch(source)  # as the engine: SourceSet.revision, then the reader
        files = source.read_tree(rev.commit, ".", suffixes=MANIFEST_SUFFIXES)

    assert rev.commit == config_repo.head()
    assert files == MANIFESTS
    rebuilt = [e for e in logs if e["event"] == "source.cache_rebuilt"]
    assert len(rebuilt) == 1
    assert rebuilt[0]["log_level"] == "warning"
    assert rebuilt[0]["path"] == str(source.path)
    assert rebuilt[0]["reason"]
    assert not [e for e in logs if e["event"] == "source.cache_close_failed"]
    assert not cache.damage_marker(source.path).exists()
    # the rebuilt cache serves the next pass without another clone
    assert fetch(source) == rev
    assert source.last_fetch is not None
    assert not source.last_fetch.fetched
    assert source.read_tree(rev.commit, ".", suffixes=MANIFEST_SUFFIXES) == MANIFESTS


def test_damage_only_a_read_finds_is_logged_and_rebuilt_by_the_read(
    config_repo: GitRepo, daemon: GitDaemon, cache_root: Path, sources: list[GitSource]
) -> None:
    source = _damaged_cache(sources, cache_root, daemon.url("config"), _missing_blob, config_repo)
    rev = fetch(source)
    assert source.last_fetch is not None
    assert not source.last_fetch.fetched  # the commit is cached: the fetch touches no blob

    with structlog.testing.capture_logs() as logs:
        files = source.read_tree(rev.commit, "apps/web", suffixes=MANIFEST_SUFFIXES)

    assert files == WEB
    events = [e["event"] for e in logs if e["event"].startswith("source.")]
    assert events == ["source.cache_damaged", "source.cache_rebuilt", "source.fetch"]
    (damaged,) = [e for e in logs if e["event"] == "source.cache_damaged"]
    assert damaged["log_level"] == "warning"
    assert damaged["path"] == str(source.path)
    assert damaged["reason"].startswith("KeyError")
    assert source.last_fetch.fetched  # cloned again


def test_damage_a_read_found_is_remembered_for_the_next_process(
    config_repo: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    bare = git_root / "config.git"
    url = str(bare)
    source = _damaged_cache(sources, cache_root, url, _missing_blob, config_repo)
    rev = fetch(source)
    away = bare.with_name("config.git.away")
    bare.rename(away)  # the remote cannot be reached: the read cannot rebuild now

    with pytest.raises(SourceUnavailable, match=r"is damaged \(KeyError.*could not be rebuilt now"):
        source.read_tree(rev.commit, "apps/web", suffixes=MANIFEST_SUFFIXES)
    # the damaged cache is kept (it still serves what it can read) and the damage noted
    assert (source.path / "objects").is_dir()
    marker = json.loads(cache.damage_marker(source.path).read_text())
    assert marker["reason"].startswith("KeyError")
    assert marker["cache"] == cache.identity(source.path)
    # later reads of this process fail at once: one attempt until the next fetch
    with pytest.raises(SourceUnavailable, match=r"could not be rebuilt \("):
        source.read_tree(rev.commit, "apps/web/base/service.yaml")
    assert source.read_tree(rev.commit, "apps/api") == {"apps/api/service.yaml": API_YAML.encode()}
    source.close()

    away.rename(bare)
    after_restart = make_source(sources, cache_root, url)
    with structlog.testing.capture_logs() as logs:
        assert fetch(after_restart) == rev

    (rebuilt,) = [e for e in logs if e["event"] == "source.cache_rebuilt"]
    assert rebuilt["reason"] == marker["reason"]
    assert after_restart.last_fetch is not None
    assert after_restart.last_fetch.fetched  # cloned again, though the commit was cached
    assert not cache.damage_marker(source.path).exists()
    assert after_restart.read_tree(rev.commit, "apps/web", suffixes=MANIFEST_SUFFIXES) == WEB


def test_a_marker_about_a_cache_since_replaced_is_ignored(
    config_repo: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    url = str(git_root / "config.git")
    source = make_source(sources, cache_root, url)
    fetch(source)
    old = cache.identity(source.path)
    cache.mark_damaged(source.path, "ChecksumMismatch: found by a reader of the old cache", old)
    with cache.CacheLock(source.path) as lock:  # another process rebuilt the cache meanwhile
        assert lock.acquire(None)
        cache.rebuild(source.path)
        cache.mark_damaged(source.path, "ChecksumMismatch: written late", old)
    assert cache.identity(source.path) != old
    fetch(make_source(sources, cache_root, url))  # the other process's fetch

    with structlog.testing.capture_logs() as logs:
        fetch(source)

    assert not [e for e in logs if e["event"] == "source.cache_rebuilt"]
    assert not cache.damage_marker(source.path).exists()


def test_an_unreadable_marker_counts_as_damage(
    config_repo: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    source = make_source(sources, cache_root, str(git_root / "config.git"))
    fetch(source)
    cache.damage_marker(source.path).write_text("{not json")

    with structlog.testing.capture_logs() as logs:
        fetch(source)

    (rebuilt,) = [e for e in logs if e["event"] == "source.cache_rebuilt"]
    assert "unreadable damage marker" in rebuilt["reason"]


def test_an_os_error_while_reading_keeps_the_cache(
    config_repo: GitRepo,
    git_root: Path,
    cache_root: Path,
    sources: list[GitSource],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = make_source(sources, cache_root, str(git_root / "config.git"))
    rev = fetch(source)

    def out_of_descriptors(*args: Any, **kwargs: Any) -> dict[str, bytes]:
        raise OSError(errno.EMFILE, "Too many open files")

    real_read = cache.read_tree
    monkeypatch.setattr(cache, "read_tree", out_of_descriptors)
    with pytest.raises(SourceUnavailable, match=r"cannot read the cache .*Too many open files"):
        source.read_tree(rev.commit, "apps/web")
    monkeypatch.setattr(cache, "read_tree", real_read)

    assert not cache.damage_marker(source.path).exists()
    assert source.read_tree(rev.commit, "apps/web") == WEB
    assert fetch(source) == rev
    assert source.last_fetch is not None
    assert not source.last_fetch.fetched  # kept: nothing downloaded again


def test_a_bug_while_reading_is_not_damage(
    config_repo: GitRepo,
    git_root: Path,
    cache_root: Path,
    sources: list[GitSource],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only dulwich's failures count (confirmed by the checksums): gitopsd's own are bugs."""
    source = make_source(sources, cache_root, str(git_root / "config.git"))
    rev = fetch(source)

    def buggy(*args: Any, **kwargs: Any) -> dict[str, bytes]:
        raise TypeError("a bug in gitopsd")

    monkeypatch.setattr(cache, "read_tree", buggy)
    with pytest.raises(TypeError, match="a bug in gitopsd"):
        source.read_tree(rev.commit, "apps/web")
    assert not cache.damage_marker(source.path).exists()


def test_the_repair_of_a_read_gives_up_after_the_timeout(
    config_repo: GitRepo,
    git_root: Path,
    cache_root: Path,
    sources: list[GitSource],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = str(git_root / "config.git")
    source = _damaged_cache(sources, cache_root, url, _missing_blob, config_repo)
    rev = fetch(source)
    slow = make_source(sources, cache_root, url, timeout=0.3)
    release = threading.Event()

    def hanging_fetch(deadline: float, waiting: Any = None) -> Any:
        release.wait(30)
        raise SourceUnavailable("released")

    monkeypatch.setattr(slow, "_fetch_sync", hanging_fetch)
    try:
        with pytest.raises(SourceUnavailable, match=r"damaged .*no answer within 0\.3s"):
            slow.read_tree(rev.commit, "apps/web")
    finally:
        release.set()
    assert cache.damage_marker(source.path).exists()  # the next fetch rebuilds


def test_damage_found_by_is_ancestor_is_remembered(
    config_repo: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    first = config_repo.head()
    middle = config_repo.commit("middle")
    head = config_repo.commit("head")
    config_repo.push()
    url = str(git_root / "config.git")
    source = make_source(sources, cache_root, url)
    fetch(source)
    source.close()
    _unpack(source.path)
    _delete_object(source.path, middle)

    with pytest.raises(SourceUnavailable, match=r"is damaged \(KeyError.*the next fetch rebuilds"):
        source.is_ancestor(first, head)
    assert cache.damage_marker(source.path).exists()

    with structlog.testing.capture_logs() as logs:
        fetch(make_source(sources, cache_root, url))
    assert [e for e in logs if e["event"] == "source.cache_rebuilt"]
    assert source.is_ancestor(first, head) is True


def test_without_repair_a_read_only_remembers_the_damage(
    config_repo: GitRepo,
    git_root: Path,
    cache_root: Path,
    sources: list[GitSource],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--offline``: no network, so the damage waits for the next fetch."""
    url = str(git_root / "config.git")
    source = _damaged_cache(sources, cache_root, url, _missing_blob, config_repo)
    rev = fetch(source)
    offline = GitSource(source.config, cache_root, repair_reads=False)
    sources.append(offline)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the network was used")

    monkeypatch.setattr(git, "open_remote", refuse)
    with pytest.raises(SourceUnavailable, match=r"is damaged \(KeyError.*the next fetch rebuilds"):
        offline.read_tree(rev.commit, "apps/web")
    assert cache.damage_marker(source.path).exists()
