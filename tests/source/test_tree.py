"""Reading files at a commit, and from a directory (``--dir``), by the same rules.

``validate --dir`` must see what the sync will see: symlinks and submodules are
reported in both (never followed, never silently dropped), paths stay inside
the root, and only manifest files are read when the caller asks for them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.gitserver import GitRepo, make_repo

from gitopsd.config import Config, DaemonConfig, SourceConfig
from gitopsd.engine.sources import DirectorySource, SourceSet
from gitopsd.errors import ManifestError, SourceRejected
from gitopsd.manifests.loader import MANIFEST_SUFFIXES, parse_file
from gitopsd.source import cache
from gitopsd.source.git import GitSource

from .helpers import fetch, make_source

NOT_FOLLOWED = "symlinks/submodules are not followed; commit the file itself"


def _publish(repo: GitRepo, git_root: Path) -> None:
    repo.commit("c")
    repo.publish(git_root / "config.git")


def _both(
    repo: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> tuple[GitSource, str, DirectorySource]:
    """The published repository as a Git source at its head, and its work tree as ``--dir``."""
    _publish(repo, git_root)
    source = make_source(sources, cache_root, str(git_root / "config.git"))
    return source, fetch(source).commit, DirectorySource("platform", repo.path)


@pytest.fixture
def work(tmp_path: Path) -> GitRepo:
    repo = make_repo(tmp_path / "work")
    repo.write("shared/td.yaml", "kind: TaskDefinition\nfamily: web\n")
    repo.write("apps/web/svc.yaml", "kind: Service\nserviceName: web\n")
    return repo


def test_a_symlinked_manifest_is_reported_by_git_and_by_dir(
    work: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    (work.path / "apps/web/td.yaml").symlink_to("../../shared/td.yaml")
    work.git("add", "apps/web/td.yaml")
    source, commit, directory = _both(work, git_root, cache_root, sources)

    for read in (source.read_tree, directory.read_tree):
        with pytest.raises(SourceRejected) as err:
            read(commit, "apps/web", suffixes=MANIFEST_SUFFIXES)
        assert f"'apps/web/td.yaml' is a symlink: {NOT_FOLLOWED}" in str(err.value)
        with pytest.raises(SourceRejected, match=r"'apps/web/td\.yaml' is a symlink"):
            read(commit, "apps/web/td.yaml")


def test_a_symlinked_app_directory_is_reported_by_git_and_by_dir(
    work: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    (work.path / "apps/link").symlink_to("web")
    work.git("add", "apps/link")
    source, commit, directory = _both(work, git_root, cache_root, sources)

    for read in (source.read_tree, directory.read_tree):
        for prefix in ("apps/link", "apps/link/svc.yaml", "apps"):
            with pytest.raises(SourceRejected, match=f"'apps/link' is a symlink: {NOT_FOLLOWED}"):
                read(commit, prefix)
        assert list(read(commit, "apps/web")) == ["apps/web/svc.yaml"]


def test_a_link_that_cannot_hide_manifests_is_passed_over(
    work: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    work.write("README.md", "docs\n")
    (work.path / "apps/web/README.md").symlink_to("../../README.md")
    work.git("add", "apps/web/README.md")
    source, commit, directory = _both(work, git_root, cache_root, sources)

    for read in (source.read_tree, directory.read_tree):
        assert list(read(commit, "apps/web", suffixes=MANIFEST_SUFFIXES)) == ["apps/web/svc.yaml"]
        with pytest.raises(SourceRejected, match=r"'apps/web/README\.md' is a symlink"):
            read(commit, "apps/web")  # without the filter every file counts


def test_a_submodule_is_reported_not_a_key_error(
    work: GitRepo, tmp_path: Path, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    sub = make_repo(tmp_path / "sub")
    sub.write("x.yaml", "a: 1\n")
    sub_commit = sub.commit("s")
    work.git("update-index", "--add", "--cacheinfo", f"160000,{sub_commit},apps/vendor")
    work.write(".gitmodules", '[submodule "v"]\n\tpath = apps/vendor\n\turl = ../sub\n')
    _publish(work, git_root)
    source = make_source(sources, cache_root, str(git_root / "config.git"))
    commit = fetch(source).commit

    for prefix in ("apps/vendor", "apps/vendor/x.yaml", "apps", "."):
        with pytest.raises(SourceRejected, match=f"'apps/vendor' is a submodule: {NOT_FOLLOWED}"):
            source.read_tree(commit, prefix, suffixes=MANIFEST_SUFFIXES)
    assert list(source.read_tree(commit, "apps/web")) == ["apps/web/svc.yaml"]


def test_a_checked_out_submodule_is_reported_by_dir(tmp_path: Path, work: GitRepo) -> None:
    nested = make_repo(work.path / "apps/vendor")
    nested.write("x.yaml", "a: 1\n")
    directory = DirectorySource("platform", work.path)

    for prefix in ("apps", "apps/vendor", "apps/vendor/x.yaml"):
        with pytest.raises(SourceRejected, match=f"'apps/vendor' is a submodule: {NOT_FOLLOWED}"):
            directory.read_tree("worktree", prefix)


def test_hidden_symlinks_are_ignored_and_hidden_files_filtered_alike(
    work: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    work.write("apps/web/.cache/old.yaml", "x: 1\n")
    (work.path / "apps/web/.cache/link.yaml").symlink_to("old.yaml")
    (work.path / "apps/web/.link").symlink_to("svc.yaml")
    work.write("apps/web/README.md", "readme\n")
    work.write("apps/web/sub/TD.YML", "kind: TaskDefinition\n")
    work.write("apps/web/sub/data.json", "{}\n")
    work.git("add", "-A")
    source, commit, directory = _both(work, git_root, cache_root, sources)

    filtered = {
        "apps/web/svc.yaml": b"kind: Service\nserviceName: web\n",
        "apps/web/sub/TD.YML": b"kind: TaskDefinition\n",
        "apps/web/sub/data.json": b"{}\n",
    }
    everything = {
        **filtered,
        "apps/web/.cache/old.yaml": b"x: 1\n",
        "apps/web/README.md": b"readme\n",
    }
    for read in (source.read_tree, directory.read_tree):
        assert read(commit, "apps/web", suffixes=MANIFEST_SUFFIXES) == filtered
        assert read(commit, "apps/web") == everything
        assert read(commit, "apps/web/.cache", suffixes=MANIFEST_SUFFIXES) == {}
        assert read(commit, "apps/web/README.md", suffixes=MANIFEST_SUFFIXES) == {}


def test_dir_refuses_paths_that_leave_the_root(tmp_path: Path, work: GitRepo) -> None:
    (tmp_path / "secret.yaml").write_text("kind: Service\n")
    directory = DirectorySource("platform", work.path)
    with pytest.raises(SourceRejected, match=r"must stay inside the repository \(no '\.\.'\)"):
        directory.read_tree("worktree", "../")
    with pytest.raises(SourceRejected, match="does not exist"):
        directory.read_tree("worktree", "/secret.yaml")  # relative to the root, like Git
    with pytest.raises(SourceRejected, match="does not exist"):
        directory.read_tree("worktree", ".git/config")


def test_reads_of_the_last_commit_are_kept(
    work: GitRepo,
    git_root: Path,
    cache_root: Path,
    sources: list[GitSource],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    work.write("apps/web/overlays/prod/p.yaml", "target: {kind: Service, name: web}\n")
    source, first, _ = _both(work, git_root, cache_root, sources)
    work.write("apps/web/svc.yaml", "kind: Service\nserviceName: web\ndesiredCount: 2\n")
    second = work.commit("second")
    work.push()
    assert fetch(source).commit == second
    real_read = cache.read_tree
    reads: list[str] = []

    def counted(*args: Any, **kwargs: Any) -> dict[str, bytes]:
        reads.append(args[2])
        return real_read(*args, **kwargs)

    monkeypatch.setattr(cache, "read_tree", counted)
    manifests = {"suffixes": MANIFEST_SUFFIXES}

    web = source.read_tree(second, "apps/web", **manifests)
    assert reads == ["apps/web"]
    # the same read, reads below it (an overlay, one file) and copies: from memory
    assert source.read_tree(second, "apps/web/", **manifests) == web
    assert source.read_tree(second, "apps/web/overlays/prod", **manifests) == {
        "apps/web/overlays/prod/p.yaml": web["apps/web/overlays/prod/p.yaml"]
    }
    assert source.read_tree(second, "apps/web/svc.yaml", **manifests) == {
        "apps/web/svc.yaml": web["apps/web/svc.yaml"]
    }
    source.read_tree(second, "apps/web", **manifests).clear()
    assert source.read_tree(second, "apps/web", **manifests) == web
    assert reads == ["apps/web"]
    # another filter, a missing path and another commit are read
    assert "apps/web/svc.yaml" in source.read_tree(second, "apps/web")
    with pytest.raises(SourceRejected, match="does not exist"):
        source.read_tree(second, "apps/web/nope", **manifests)
    old = source.read_tree(first, "apps/web", **manifests)
    assert old["apps/web/svc.yaml"] == b"kind: Service\nserviceName: web\n"
    assert reads == ["apps/web", "apps/web", "apps/web/nope", "apps/web"]
    # only the last commit's reads are kept
    source.read_tree(second, "apps/web", **manifests)
    assert reads[-1] == "apps/web"
    assert len(reads) == 5


def test_a_file_name_that_is_not_utf8_is_shown_without_surrogates(
    work: GitRepo, git_root: Path, cache_root: Path, sources: list[GitSource]
) -> None:
    name = os.fsdecode(b"lat\xe9n.yaml")
    (work.path / "apps" / name).write_bytes(b"kind: Service\nserviceName: [\n")
    work.git("add", "-A")
    source, commit, directory = _both(work, git_root, cache_root, sources)

    for read in (source.read_tree, directory.read_tree):
        files = read(commit, "apps", suffixes=MANIFEST_SUFFIXES)
        key = f"apps/{name}"
        _, problems = parse_file(key, files[key])
        text = str(ManifestError(problems))
        assert text.startswith("apps/lat\\xe9n.yaml:3: invalid YAML")
        text.encode("utf-8")  # no lone surrogate


def test_the_engine_reads_only_manifests(work: GitRepo, git_root: Path, tmp_path: Path) -> None:
    work.write("apps/web/big.bin", "x" * 100_000)
    work.write("apps/web/.hidden.yaml", "x: 1\n")
    _publish(work, git_root)
    config = Config(
        daemon=DaemonConfig(state_dir=tmp_path / "state"),
        sources=[SourceConfig(name="platform", url=str(git_root / "config.git"))],
    )
    for directory in (None, work.path):
        sources_ = SourceSet(config, directory=directory)
        try:
            revision = anyio.run(sources_.revision, "platform")
            read = sources_.reader("platform", revision.commit)
            assert sorted(read("apps")) == ["apps/web/svc.yaml"]
        finally:
            sources_.close()
