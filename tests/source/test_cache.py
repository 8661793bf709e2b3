"""The Git cache survives damage, crashes, sharing and slow housekeeping (real remotes).

A cache only holds data that can be fetched again, so damage must lead to a
fresh clone, never to an "internal error"; a transient operating-system error
must not throw the cache away; a daemon and a CLI run sharing a state
directory must not trip over each other.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog.testing
from dulwich.pack import Pack
from support.gitserver import GitDaemon, GitRepo

from gitopsd.errors import SourceUnavailable
from gitopsd.source import cache
from gitopsd.source.git import GitSource

from .helpers import fetch, make_source, packs
from .sample import SERVICE_YAML


def _truncate_packs(path: Path) -> None:
    for pack in (path / "objects" / "pack").glob("*.pack"):
        with pack.open("r+b") as f:
            f.truncate(pack.stat().st_size // 2)


def _empty_packs(path: Path) -> None:
    for pack in (path / "objects" / "pack").glob("*.pack"):
        pack.write_bytes(b"")


def _garbage_ref(path: Path) -> None:
    (path / "refs" / "heads" / "main").write_text("garbage\n")


def _broken_config(path: Path) -> None:
    (path / "config").write_text("[core\nbroken")


def _no_objects(path: Path) -> None:
    shutil.rmtree(path / "objects")


def _file_instead(path: Path) -> None:
    shutil.rmtree(path)
    path.write_text("oops")


@pytest.mark.parametrize(
    "damage",
    [_truncate_packs, _empty_packs, _garbage_ref, _broken_config, _no_objects, _file_instead],
)
def test_a_damaged_cache_is_moved_aside_and_cloned_again(
    damage: Callable[[Path], None],
    config_repo: GitRepo,
    git_root: Path,
    cache_root: Path,
    sources: list[GitSource],
) -> None:
    url = str(git_root / "config.git")
    first = make_source(sources, cache_root, url)
    fetch(first)
    first.close()
    damage(first.path)
    config_repo.write("apps/web/base/service.yaml", "kind: Service\nname: web\nrev: 2\n")
    head = config_repo.commit("rev 2")
    config_repo.push()

    source = make_source(sources, cache_root, url)
    with structlog.testing.capture_logs() as logs:
        rev = fetch(source)

    assert rev.commit == head
    assert source.read_tree(head, "apps/web/base")["apps/web/base/service.yaml"].endswith(
        b"rev: 2\n"
    )
    (event,) = [e for e in logs if e["event"] == "source.cache_rebuilt"]
    assert event["log_level"] == "warning"
    assert event["path"] == str(source.path)
    if damage is _file_instead:
        assert event["moved_to"] is None
    else:
        assert event["moved_to"] == str(source.path) + ".broken"
        assert Path(event["moved_to"]).is_dir()


def test_damage_found_while_reading_is_rebuilt_by_the_read(
    config_repo: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    source = make_source(sources, cache_root, str(git_root / "config.git"))
    rev = fetch(source)
    source.close()
    _truncate_packs(source.path)

    assert source.read_tree(rev.commit, "apps/web/base/service.yaml") == {
        "apps/web/base/service.yaml": SERVICE_YAML.encode()
    }
    assert source.last_fetch is not None
    assert source.last_fetch.fetched  # cloned again
    assert fetch(source) == rev


def test_damage_found_while_reading_is_rebuilt_by_the_next_fetch_if_the_remote_is_away(
    config_repo: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    bare = git_root / "config.git"
    source = make_source(sources, cache_root, str(bare))
    rev = fetch(source)
    source.close()
    _truncate_packs(source.path)
    bare.rename(bare.with_name("away.git"))

    with pytest.raises(SourceUnavailable, match=r"is damaged .*the next fetch retries"):
        source.read_tree(rev.commit, "apps/web")

    bare.with_name("away.git").rename(bare)
    assert fetch(source) == rev
    assert source.last_fetch is not None
    assert source.last_fetch.fetched  # cloned again
    assert source.read_tree(rev.commit, "apps/web/base/service.yaml") == {
        "apps/web/base/service.yaml": SERVICE_YAML.encode()
    }


def test_a_transient_os_error_keeps_the_cache(
    config_repo: GitRepo,
    git_root: Path,
    cache_root: Path,
    sources: list[GitSource],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = make_source(sources, cache_root, str(git_root / "config.git"))
    rev = fetch(source)
    before = sorted(p.name for p in (source.path / "objects" / "pack").iterdir())
    real_init = cache.CacheRepo.__init__

    def out_of_descriptors(self: cache.CacheRepo, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(cache.CacheRepo, "__init__", out_of_descriptors)
    with pytest.raises(SourceUnavailable, match=r"cannot open the cache .*Too many open files"):
        fetch(source)
    monkeypatch.setattr(cache.CacheRepo, "__init__", real_init)

    assert sorted(p.name for p in (source.path / "objects" / "pack").iterdir()) == before
    assert fetch(source) == rev
    assert source.last_fetch is not None
    assert not source.last_fetch.fetched  # the cache was kept: nothing downloaded again


@pytest.mark.parametrize(
    "leftover",
    [
        "refs/heads/main.lock",
        "packed-refs.lock",
        "HEAD.lock",
        "objects/pack/tmp_leftover.pack",
        "objects/tmp_pack_leftover",
    ],
)
def test_a_lock_or_temp_file_left_by_a_crash_is_removed_whatever_its_age(
    leftover: str,
    config_repo: GitRepo,
    git_root: Path,
    cache_root: Path,
    sources: list[GitSource],
) -> None:
    """gitopsd's writers all hold the CacheLock: any such file found while holding it is stale."""
    source = make_source(sources, cache_root, str(git_root / "config.git"), timeout=60)
    fetch(source)
    left = source.path / leftover
    config_repo.write("x.yaml", "x: 1\n")
    head = config_repo.commit("x")
    config_repo.push()
    left.write_text("")  # a fetch that crashed a moment ago (fresh mtime)

    with structlog.testing.capture_logs() as logs:
        assert fetch(source).commit == head

    assert not left.exists()
    removed = [e for e in logs if e["event"] == "source.cache_stale_files_removed"]
    assert removed[0]["files"] == [leftover]
    assert removed[0]["log_level"] == "warning"


def test_lock_files_are_left_alone_while_another_process_holds_the_cache(
    config_repo: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    source = make_source(sources, cache_root, str(git_root / "config.git"), timeout=0.3)
    fetch(source)
    lock = source.path / "refs" / "heads" / "main.lock"
    lock.write_text("")  # written by the holder below, which is still fetching
    config_repo.write("x.yaml", "x: 1\n")
    head = config_repo.commit("x")
    config_repo.push()

    with _holding(cache.CacheLock(source.path).path):
        with pytest.raises(SourceUnavailable, match="another gitopsd process is still fetching"):
            fetch(source)
        assert lock.exists()
        assert cache.remove_stale_files(source.path, max_age=3600) == []  # spares fresh ones

    assert fetch(source).commit == head
    assert not lock.exists()


@contextmanager
def _holding(lock_file: Path) -> Iterator[None]:
    """Another process holding ``flock`` on ``lock_file`` until the block ends."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys\n"
            "f = open(sys.argv[1], 'w')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
            str(lock_file),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline() == "locked\n"
        yield
    finally:
        holder.stdin.close()  # the holder exits, and the kernel releases its lock
        holder.wait(timeout=10)
        holder.stdout.close()


def test_a_fetch_waits_for_another_process_holding_the_cache(
    config_repo: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    source = make_source(sources, cache_root, str(git_root / "config.git"), timeout=0.5)
    cache_root.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys\n"
            "f = open(sys.argv[1], 'w')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
            str(cache.CacheLock(source.path).path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(SourceUnavailable, match="another gitopsd process is still fetching"):
            fetch(source)
    finally:
        holder.stdin.close()  # the holder exits, and the kernel releases its lock
        holder.wait(timeout=10)
        holder.stdout.close()
    assert fetch(source).commit == config_repo.head()


def test_sources_sharing_a_cache_fetch_concurrently(
    config_repo: GitRepo, git_daemon: GitDaemon, cache_root: Path, sources: list[GitSource]
) -> None:
    """A daemon and ``gitopsd diff`` on one state directory: no FileLocked, no errors."""
    errors: list[BaseException] = []
    for round_ in range(4):
        config_repo.write("apps/web/base/service.yaml", f"kind: Service\nrev: {round_}\n")
        head = config_repo.commit(f"rev {round_}")
        config_repo.push()
        group = [make_source(sources, cache_root, git_daemon.url("config")) for _ in range(4)]
        results: list[str] = []

        def poll(source: GitSource, results: list[str]) -> None:
            try:
                rev = fetch(source)
                source.read_tree(rev.commit, "apps/web")
                results.append(rev.commit)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=poll, args=(s, results)) for s in group]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert results == [head] * 4


def test_counting_fetched_objects_does_not_hash_pack_indexes(
    config_repo: GitRepo,
    git_daemon: GitDaemon,
    cache_root: Path,
    sources: list[GitSource],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Pack.name()`` hashes every object id of an index: gitopsd compares file names.

    Dulwich itself names each existing pack once when it stores a fetched one;
    gitopsd adds no call of its own.
    """
    source = make_source(sources, cache_root, git_daemon.url("config"))
    fetch(source)
    real_name = Pack.name
    calls: list[Pack] = []

    def counted(self: Pack) -> bytes:
        calls.append(self)
        return real_name(self)

    monkeypatch.setattr(Pack, "name", counted)
    for i in range(3):
        existing = packs(source)
        calls.clear()
        config_repo.write("apps/web/base/service.yaml", f"kind: Service\nname: web\nrev: {i}\n")
        config_repo.commit(f"rev {i}")
        config_repo.push()

        fetch(source)

        assert source.last_fetch is not None
        assert 0 < source.last_fetch.objects <= 12
        assert packs(source) == existing + 1
        assert len(calls) <= existing


def test_a_slow_repack_is_not_a_fetch_timeout(
    config_repo: GitRepo,
    git_daemon: GitDaemon,
    cache_root: Path,
    sources: list[GitSource],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timeout = 0.5
    source = make_source(
        sources, cache_root, git_daemon.url("config"), repack_after=1, timeout=timeout
    )
    fetch(source)
    real_repack = cache.maybe_repack
    repacked = threading.Event()

    def slow_repack(repo: Any, threshold: int) -> bool:
        done = real_repack(repo, threshold)
        threading.Event().wait(timeout * 2)  # outlast the fetch timeout
        repacked.set()
        return done

    monkeypatch.setattr(cache, "maybe_repack", slow_repack)
    config_repo.write("apps/web/base/service.yaml", "kind: Service\nname: web\nrev: 2\n")
    head = config_repo.commit("rev 2")
    config_repo.push()

    with structlog.testing.capture_logs() as logs:
        rev = anyio.run(source.fetch)

    assert rev.commit == head
    assert repacked.is_set()
    assert packs(source) == 1
    assert source.last_fetch is not None
    assert source.last_fetch.duration < timeout
    events = [e["event"] for e in logs if e["event"].startswith("source.")]
    assert events == ["source.fetch", "source.repack"]
