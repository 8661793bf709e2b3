"""What the cache alone can tell: the last fetched commit (offline fallback) and ancestry.

``cached_revision`` must work with the remote gone, in a new process, without
any network access; ``is_ancestor`` must tell a fast-forward from a rewritten
history (force-push) after a real force-push, reading only what it needs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dulwich.object_store import DiskObjectStore
from support.gitserver import GitDaemon, GitRepo

from gitopsd.errors import SourceRejected, SourceUnavailable
from gitopsd.manifests.loader import MANIFEST_SUFFIXES
from gitopsd.model import Revision
from gitopsd.source import cache, git
from gitopsd.source.git import CachedRevision, GitSource

from .helpers import fetch, make_source
from .sample import API_YAML, SERVICE_YAML, TASK_YAML


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on any attempt to reach a remote fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the network was used")

    monkeypatch.setattr(git, "open_remote", refuse)


def test_cached_revision_with_the_remote_gone_in_a_new_process(
    config_repo: GitRepo,
    git_root: Path,
    cache_root: Path,
    sources: list[GitSource],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with GitDaemon(git_root) as daemon:
        url = daemon.url("config")
        first = make_source(sources, cache_root, url)
        before = time.time()
        rev = fetch(first)
        after = time.time()
        first.close()
    # the daemon is stopped: a fetch fails, and must not spoil the fallback
    offline = make_source(sources, cache_root, url)
    with pytest.raises(SourceUnavailable, match="cannot reach the remote"):
        fetch(offline)

    _no_network(monkeypatch)
    for source in (offline, make_source(sources, cache_root, url)):  # and another process
        cached = source.cached_revision()

        assert isinstance(cached, CachedRevision)
        assert cached.revision == Revision("platform", "refs/heads/main", config_repo.head())
        assert cached.revision == rev
        assert cached.fetched_at is not None
        assert before <= cached.fetched_at <= after
        assert source.read_tree(cached.revision.commit, ".", suffixes=MANIFEST_SUFFIXES) == {
            "apps/api/service.yaml": API_YAML.encode(),
            "apps/web/base/service.yaml": SERVICE_YAML.encode(),
            "apps/web/base/task.yaml": TASK_YAML.encode(),
        }


def test_cached_revision_follows_the_last_successful_fetch(
    config_repo: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    bare = git_root / "config.git"
    source = make_source(sources, cache_root, str(bare))
    fetch(source)
    first = source.cached_revision()
    config_repo.write("x.yaml", "x: 1\n")
    head = config_repo.commit("x")
    config_repo.push()

    fetch(source)  # a poll that finds nothing new records its time too
    second = source.cached_revision()
    assert second.revision.commit == head
    assert second.fetched_at is not None
    assert first.fetched_at is not None
    assert second.fetched_at >= first.fetched_at

    bare.rename(bare.with_name("away.git"))
    with pytest.raises(SourceRejected):
        fetch(source)
    assert source.cached_revision() == second  # a failed fetch changes nothing


def test_cached_revision_of_a_tag_and_of_a_commit(
    config_repo: GitRepo,
    git_root: Path,
    cache_root: Path,
    sources: list[GitSource],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tagged = config_repo.head()
    config_repo.tag("v1", annotated=True)
    later = config_repo.commit("later")
    config_repo.push()
    url = str(git_root / "config.git")
    fetch(make_source(sources, cache_root, url, tag="v1"))
    fetch(make_source(sources, cache_root, url, commit=later[:8]))
    _no_network(monkeypatch)

    by_tag = make_source(sources, cache_root, url, tag="v1").cached_revision()
    assert by_tag.revision == Revision("platform", "refs/tags/v1", tagged)  # peeled
    assert by_tag.fetched_at is not None
    pinned = make_source(sources, cache_root, url, commit=later[:8]).cached_revision()
    assert pinned.revision == Revision("platform", later[:8], later)
    assert pinned.fetched_at is not None
    missing = make_source(sources, cache_root, url, commit="deadbeef")
    with pytest.raises(SourceRejected, match="no cached commit to fall back to"):
        missing.cached_revision()


def test_nothing_cached_is_rejected(
    config_repo: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    url = str(git_root / "config.git")
    never = make_source(sources, cache_root, url)
    with pytest.raises(SourceRejected) as err:
        never.cached_revision()
    assert str(err.value) == (
        f"nothing fetched yet for source 'platform' ({url}): no cached commit to fall back to"
    )

    fetch(never)
    other_branch = make_source(sources, cache_root, url, branch="dev")  # same cache, never fetched
    with pytest.raises(SourceRejected, match="no cached commit to fall back to"):
        other_branch.cached_revision()


def test_fetched_at_is_none_when_unknown(
    config_repo: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    source = make_source(sources, cache_root, str(git_root / "config.git"))
    rev = fetch(source)
    record = cache.fetch_record_file(source.path)
    assert record.is_file()

    record.write_text("{garbage")
    assert source.cached_revision() == CachedRevision(rev, None)
    record.unlink()
    assert source.cached_revision() == CachedRevision(rev, None)


# --- ancestry ---------------------------------------------------------------------------------


@pytest.fixture
def daemon(git_root: Path, config_repo: GitRepo) -> Iterator[GitDaemon]:
    with GitDaemon(git_root) as served:
        yield served


def test_is_ancestor_after_a_force_push(
    config_repo: GitRepo, daemon: GitDaemon, cache_root: Path, sources: list[GitSource]
) -> None:
    source = make_source(sources, cache_root, daemon.url("config"))
    a = config_repo.head()
    config_repo.write("apps/web/base/service.yaml", "kind: Service\nname: web\nrev: b\n")
    b = config_repo.commit("b")
    config_repo.push()
    assert fetch(source).commit == b
    config_repo.git("reset", "-q", "--hard", a)
    config_repo.write("apps/web/base/service.yaml", "kind: Service\nname: web\nrev: c\n")
    c = config_repo.commit("c")
    config_repo.push()  # --force

    assert fetch(source).commit == c  # the rewritten branch is fetched without complaint
    assert source.read_tree(c, "apps/web/base/service.yaml") == {
        "apps/web/base/service.yaml": b"kind: Service\nname: web\nrev: c\n"
    }
    assert source.is_ancestor(b, c) is False
    assert source.is_ancestor(a, c) is True
    assert source.is_ancestor(a, b) is True  # B stays in the cache
    assert source.is_ancestor(c, c) is True
    assert source.is_ancestor(c, a) is False
    assert source.is_ancestor("0" * 40, c) is None
    assert source.is_ancestor(a, "1" * 40) is None
    assert source.is_ancestor(a[:7], c) is None  # only full ids
    tree = config_repo.git("rev-parse", f"{c}^{{tree}}")
    assert source.is_ancestor(tree, c) is None  # not a commit


def test_is_ancestor_without_a_cache(cache_root: Path, sources: list[GitSource]) -> None:
    source = make_source(sources, cache_root, str(cache_root / "nowhere.git"))
    assert source.is_ancestor("a" * 40, "b" * 40) is None


def test_is_ancestor_reads_only_what_it_needs(
    config_repo: GitRepo,
    git_root: Path,
    cache_root: Path,
    sources: list[GitSource],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    history = [config_repo.commit(f"c{i}") for i in range(150)]
    split = history[-1]
    config_repo.branch("rewrite", checkout=False)
    new = [config_repo.commit(f"n{i}") for i in range(3)]
    config_repo.checkout("rewrite")
    old = [config_repo.commit(f"o{i}") for i in range(3)]
    config_repo.checkout("main")
    config_repo.push()
    source = make_source(sources, cache_root, str(git_root / "config.git"))
    fetch(source)
    fetch(make_source(sources, cache_root, str(git_root / "config.git"), branch="rewrite"))
    assert source.is_ancestor(split, new[-1])  # open the reader before counting

    reads: list[bytes] = []
    real_getitem = DiskObjectStore.__getitem__

    def counted(self: DiskObjectStore, sha: Any) -> Any:
        reads.append(sha)
        return real_getitem(self, sha)

    monkeypatch.setattr(DiskObjectStore, "__getitem__", counted)
    assert source.is_ancestor(new[0], new[-1]) is True
    assert len(reads) < 15, len(reads)
    reads.clear()
    assert source.is_ancestor(old[-1], new[-1]) is False
    assert len(reads) < 25, len(reads)  # down to the split, not the 150 commits below


def test_is_ancestor_is_not_fooled_by_a_skewed_clock(
    config_repo: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    """A commit dated before its ancestor (a wrong clock): pruning by date would answer False."""
    config_repo._clock += 1000
    ancestor = config_repo.commit("written on a machine whose clock runs fast")
    config_repo._clock -= 2000
    config_repo.commit("the clock is right again")
    head = config_repo.commit("later")
    config_repo.push()
    source = make_source(sources, cache_root, str(git_root / "config.git"))
    fetch(source)

    assert source.is_ancestor(ancestor, head) is True
