"""GitSource against real remotes: local paths, file://, git daemon and smart HTTP with auth."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog.testing
from support.gitserver import GitDaemon, GitHttpServer, GitRepo, free_port

from gitopsd.config import AuthConfig
from gitopsd.errors import SourceRejected, SourceUnavailable
from gitopsd.model import Revision
from gitopsd.source.git import GitSource

from .helpers import fetch, logged_requests, make_source, packs
from .sample import API_YAML, HTTP_PASSWORD, HTTP_USER, SERVICE_YAML, TASK_YAML


@pytest.fixture(params=["path", "file", "git", "http"])
def remote_url(
    request: pytest.FixtureRequest,
    git_root: Path,
    config_repo: GitRepo,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The published config repository over each transport, with the auth it needs."""
    bare = git_root / "config.git"
    if request.param == "path":
        yield str(bare), {}
    elif request.param == "file":
        yield bare.as_uri(), {}
    elif request.param == "git":
        with GitDaemon(git_root) as daemon:
            yield daemon.url("config"), {}
    else:
        monkeypatch.setenv("GIT_TOKEN", HTTP_PASSWORD)
        with GitHttpServer(git_root, username=HTTP_USER, password=HTTP_PASSWORD) as server:
            yield server.url("config"), {"auth": AuthConfig(token_env="GIT_TOKEN")}


def test_clone_then_read_tree_over_each_transport(
    remote_url: tuple[str, dict[str, Any]],
    config_repo: GitRepo,
    cache_root: Path,
    sources: list[GitSource],
) -> None:
    url, kwargs = remote_url
    source = make_source(sources, cache_root, url, **kwargs)

    rev = fetch(source)

    assert rev == Revision("platform", "refs/heads/main", config_repo.head())
    assert source.last_fetch is not None
    assert source.last_fetch.fetched
    assert source.read_tree(rev.commit, "apps/web") == {
        "apps/web/base/service.yaml": SERVICE_YAML.encode(),
        "apps/web/base/task.yaml": TASK_YAML.encode(),
    }
    whole = source.read_tree(rev.commit, ".")
    assert sorted(whole) == [
        "README.md",
        "apps/api/service.yaml",
        "apps/web/base/service.yaml",
        "apps/web/base/task.yaml",
    ]
    assert source.read_tree(rev.commit, "") == whole
    assert source.read_tree(rev.commit, "/apps/web/base/") == source.read_tree(
        rev.commit, "apps/web"
    )
    assert source.read_tree(rev.commit, "apps/api/service.yaml") == {
        "apps/api/service.yaml": API_YAML.encode()
    }


@pytest.mark.parametrize("transport", ["git", "http"])
def test_incremental_fetch_downloads_only_the_new_commit(
    transport: str,
    config_repo: GitRepo,
    git_daemon: GitDaemon,
    http_server: GitHttpServer,
    cache_root: Path,
    sources: list[GitSource],
    token_env: str,
) -> None:
    for i in range(60):
        config_repo.write(f"apps/bulk/file{i:02d}.yaml", f"index: {i}\n" * 20)
    first = config_repo.commit("bulk")
    config_repo.push()
    if transport == "git":
        source = make_source(sources, cache_root, git_daemon.url("config"))
    else:
        source = make_source(
            sources, cache_root, http_server.url("config"), auth=AuthConfig(token_env=token_env)
        )
    assert fetch(source).commit == first
    assert source.last_fetch is not None
    assert source.last_fetch.objects > 60
    assert packs(source) == 1

    config_repo.write("apps/web/base/service.yaml", "kind: Service\nname: web\ncount: 2\n")
    second = config_repo.commit("scale web")
    config_repo.push()
    http_server.clear()

    assert fetch(source).commit == second
    stats = source.last_fetch
    assert stats.fetched
    # the commit, 4 trees on the changed path and the blob, plus the few bases git used
    # for deltas (a thin pack is completed with them); never the 60 unchanged files
    assert 0 < stats.objects <= 12
    assert packs(source) == 2
    assert source.read_tree(second, "apps/web/base")["apps/web/base/service.yaml"].endswith(
        b"count: 2\n"
    )
    assert source.read_tree(first, "apps/web/base")["apps/web/base/service.yaml"] == (
        SERVICE_YAML.encode()
    )


def test_same_commit_poll_downloads_nothing_over_http(
    config_repo: GitRepo,
    http_server: GitHttpServer,
    cache_root: Path,
    sources: list[GitSource],
    token_env: str,
) -> None:
    source = make_source(
        sources, cache_root, http_server.url("config"), auth=AuthConfig(token_env=token_env)
    )
    first = fetch(source)
    before = packs(source)
    http_server.clear()

    assert fetch(source) == first

    assert source.last_fetch is not None
    assert not source.last_fetch.fetched
    assert source.last_fetch.objects == 0
    assert packs(source) == before
    requests = logged_requests(http_server, 1)
    assert requests, "the poll should have listed the remote refs"
    assert all(
        (r.method, r.path, r.command)
        in {
            ("GET", "/config.git/info/refs", ""),
            ("POST", "/config.git/git-upload-pack", "ls-refs"),
        }
        for r in requests
    ), requests


def test_same_commit_poll_downloads_nothing_over_git(
    config_repo: GitRepo, git_daemon: GitDaemon, cache_root: Path, sources: list[GitSource]
) -> None:
    source = make_source(sources, cache_root, git_daemon.url("config"))
    fetch(source)
    before = packs(source)
    fetch(source)
    assert source.last_fetch is not None
    assert not source.last_fetch.fetched
    assert packs(source) == before


def test_new_instance_reuses_the_cache(
    config_repo: GitRepo, git_daemon: GitDaemon, cache_root: Path, sources: list[GitSource]
) -> None:
    first = make_source(sources, cache_root, git_daemon.url("config"))
    rev = fetch(first)
    first.close()

    again = make_source(sources, cache_root, git_daemon.url("config"))
    assert again.path == first.path
    assert fetch(again) == rev
    assert again.last_fetch is not None
    assert not again.last_fetch.fetched
    assert again.read_tree(rev.commit, "apps/api") == {"apps/api/service.yaml": API_YAML.encode()}


def test_branch_moved_back_to_a_cached_commit_downloads_nothing(
    config_repo: GitRepo, git_daemon: GitDaemon, cache_root: Path, sources: list[GitSource]
) -> None:
    old = config_repo.head()
    source = make_source(sources, cache_root, git_daemon.url("config"))
    fetch(source)
    config_repo.write("x.txt", "x\n")
    config_repo.commit("x")
    config_repo.push()
    fetch(source)
    config_repo.git("reset", "-q", "--hard", old)
    config_repo.push()

    assert fetch(source).commit == old
    assert source.last_fetch is not None
    assert not source.last_fetch.fetched


def test_other_branch(
    config_repo: GitRepo, git_daemon: GitDaemon, cache_root: Path, sources: list[GitSource]
) -> None:
    config_repo.branch("dev")
    config_repo.write("apps/web/base/service.yaml", "dev\n")
    dev = config_repo.commit("dev change")
    config_repo.push()
    source = make_source(sources, cache_root, git_daemon.url("config"), branch="dev")

    rev = fetch(source)

    assert rev == Revision("platform", "refs/heads/dev", dev)
    assert source.read_tree(dev, "apps/web/base/service.yaml") == {
        "apps/web/base/service.yaml": b"dev\n"
    }


@pytest.mark.parametrize("annotated", [True, False])
def test_tag_is_peeled_to_its_commit(
    annotated: bool,
    config_repo: GitRepo,
    git_daemon: GitDaemon,
    cache_root: Path,
    sources: list[GitSource],
) -> None:
    tagged = config_repo.head()
    tag_id = config_repo.tag("v1.0.0", annotated=annotated)
    assert (tag_id != tagged) is annotated
    config_repo.write("later.txt", "later\n")
    config_repo.commit("after the tag")
    config_repo.push()
    source = make_source(sources, cache_root, git_daemon.url("config"), tag="v1.0.0")

    assert fetch(source) == Revision("platform", "refs/tags/v1.0.0", tagged)
    assert "later.txt" not in source.read_tree(tagged, ".")
    assert fetch(source).commit == tagged
    assert source.last_fetch is not None
    assert not source.last_fetch.fetched


def test_tag_fetch_offers_cached_commits_as_haves(
    config_repo: GitRepo, git_daemon: GitDaemon, cache_root: Path, sources: list[GitSource]
) -> None:
    for i in range(40):
        config_repo.write(f"bulk/{i}.txt", f"{i}\n" * 10)
    config_repo.commit("bulk")
    config_repo.tag("v1", annotated=True)
    config_repo.push()
    v1 = make_source(sources, cache_root, git_daemon.url("config"), tag="v1")
    fetch(v1)
    config_repo.write("bulk/0.txt", "changed\n")
    config_repo.commit("change")
    config_repo.tag("v2", annotated=True)
    config_repo.push()
    # same name and URL: same cache, now pinned to the next tag
    v2 = make_source(sources, cache_root, git_daemon.url("config"), tag="v2")

    fetch(v2)

    assert v2.last_fetch is not None
    assert 0 < v2.last_fetch.objects <= 10  # not the 40 unchanged files again


@pytest.mark.parametrize("digits", [40, 7])
def test_commit_ref_full_or_abbreviated(
    digits: int,
    config_repo: GitRepo,
    http_server: GitHttpServer,
    cache_root: Path,
    sources: list[GitSource],
    token_env: str,
) -> None:
    config_repo.branch("dev")
    config_repo.write("apps/web/base/task.yaml", "pinned\n")
    pinned = config_repo.commit("pin me")
    config_repo.write("apps/web/base/task.yaml", "newer\n")
    config_repo.commit("newer")
    config_repo.push()
    source = make_source(
        sources,
        cache_root,
        http_server.url("config"),
        commit=pinned[:digits],
        auth=AuthConfig(token_env=token_env),
    )

    rev = fetch(source)

    assert rev == Revision("platform", pinned[:digits], pinned)
    assert source.read_tree(pinned, "apps/web/base/task.yaml") == {
        "apps/web/base/task.yaml": b"pinned\n"
    }
    http_server.clear()
    assert fetch(source) == rev
    assert http_server.requests == []  # a cached commit never changes: no network at all


def test_missing_commit(
    config_repo: GitRepo, git_daemon: GitDaemon, cache_root: Path, sources: list[GitSource]
) -> None:
    source = make_source(sources, cache_root, git_daemon.url("config"), commit="deadbee")
    with pytest.raises(SourceRejected) as err:
        fetch(source)
    assert "commit deadbee is not on any branch of the remote (branches: main)" in str(err.value)


def test_missing_branch_lists_the_branches(
    config_repo: GitRepo, git_daemon: GitDaemon, cache_root: Path, sources: list[GitSource]
) -> None:
    config_repo.branch("dev", checkout=False)
    config_repo.push()
    source = make_source(sources, cache_root, git_daemon.url("config"), branch="nope")

    with pytest.raises(SourceRejected) as err:
        fetch(source)

    message = str(err.value)
    assert message.startswith(f"source 'platform' ({git_daemon.url('config')}): ")
    assert "branch 'nope' does not exist on the remote; branches: dev, main" in message
    assert "sources[platform].branch" in message


def test_missing_tag_lists_the_tags(
    config_repo: GitRepo, git_daemon: GitDaemon, cache_root: Path, sources: list[GitSource]
) -> None:
    config_repo.tag("v1")
    config_repo.push()
    source = make_source(sources, cache_root, git_daemon.url("config"), tag="v9")
    with pytest.raises(SourceRejected, match=r"tag 'v9' does not exist on the remote; tags: v1"):
        fetch(source)


def test_token_from_file(
    tmp_path: Path,
    config_repo: GitRepo,
    http_server: GitHttpServer,
    cache_root: Path,
    sources: list[GitSource],
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(HTTP_PASSWORD + "\n")
    source = make_source(
        sources, cache_root, http_server.url("config"), auth=AuthConfig(token_file=token_file)
    )
    assert fetch(source).commit == config_repo.head()


def test_username_and_password_from_env(
    git_root: Path,
    config_repo: GitRepo,
    cache_root: Path,
    sources: list[GitSource],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GIT_PASSWORD", "hunter2")
    with GitHttpServer(git_root, username="deploy", password="hunter2") as server:
        source = make_source(
            sources,
            cache_root,
            server.url("config"),
            auth=AuthConfig(username="deploy", password_env="GIT_PASSWORD"),
        )
        assert fetch(source).commit == config_repo.head()


def test_wrong_password_is_rejected_without_leaking_it(
    config_repo: GitRepo,
    http_server: GitHttpServer,
    cache_root: Path,
    sources: list[GitSource],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GIT_TOKEN", "wrong-t0ken-value")
    source = make_source(
        sources, cache_root, http_server.url("config"), auth=AuthConfig(token_env="GIT_TOKEN")
    )

    with pytest.raises(SourceRejected) as err:
        fetch(source)

    message = str(err.value)
    assert "authentication failed" in message
    assert "check the token in $GIT_TOKEN" in message
    assert "wrong-t0ken-value" not in message


def test_wrong_password_in_the_url_is_redacted(
    config_repo: GitRepo, http_server: GitHttpServer, cache_root: Path, sources: list[GitSource]
) -> None:
    url = http_server.url("config", userinfo=f"{HTTP_USER}:not-the-password")
    source = make_source(sources, cache_root, url)

    with pytest.raises(SourceRejected) as err:
        fetch(source)

    message = str(err.value)
    assert "authentication failed" in message
    assert "not-the-password" not in message
    assert f"{HTTP_USER}:***@127.0.0.1" in message


def test_password_in_the_url_works(
    config_repo: GitRepo, http_server: GitHttpServer, cache_root: Path, sources: list[GitSource]
) -> None:
    url = http_server.url("config", userinfo=f"{HTTP_USER}:{HTTP_PASSWORD}")
    assert fetch(make_source(sources, cache_root, url)).commit == config_repo.head()


def test_no_credentials_says_how_to_configure_them(
    config_repo: GitRepo, http_server: GitHttpServer, cache_root: Path, sources: list[GitSource]
) -> None:
    source = make_source(sources, cache_root, http_server.url("config"))
    with pytest.raises(SourceRejected, match=r"authentication failed .*auth\.token_env"):
        fetch(source)


def test_missing_env_var_names_the_key(
    config_repo: GitRepo,
    http_server: GitHttpServer,
    cache_root: Path,
    sources: list[GitSource],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GIT_TOKEN_UNSET", raising=False)
    source = make_source(
        sources, cache_root, http_server.url("config"), auth=AuthConfig(token_env="GIT_TOKEN_UNSET")
    )
    with pytest.raises(SourceRejected) as err:
        fetch(source)
    assert str(err.value) == (
        "sources[platform].auth.token_env: environment variable GIT_TOKEN_UNSET is not set"
    )


def test_unreadable_token_file_names_the_key(
    tmp_path: Path,
    config_repo: GitRepo,
    http_server: GitHttpServer,
    cache_root: Path,
    sources: list[GitSource],
) -> None:
    missing = tmp_path / "no-such-token"
    source = make_source(
        sources, cache_root, http_server.url("config"), auth=AuthConfig(token_file=missing)
    )
    with pytest.raises(SourceRejected) as err:
        fetch(source)
    assert str(err.value) == (
        f"sources[platform].auth.token_file: cannot read {missing}: No such file or directory"
    )


@pytest.mark.parametrize("scheme", ["git", "http"])
def test_unreachable_port_is_temporary(
    scheme: str, cache_root: Path, sources: list[GitSource]
) -> None:
    url = f"{scheme}://127.0.0.1:{free_port()}/config.git"
    source = make_source(sources, cache_root, url)
    with pytest.raises(SourceUnavailable, match=r"cannot reach the remote.*refused"):
        fetch(source)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.mark.parametrize("scheme", ["git", "http"])
def test_silent_server_times_out(
    scheme: str, silent_server: int, cache_root: Path, sources: list[GitSource]
) -> None:
    url = f"{scheme}://127.0.0.1:{silent_server}/config.git"
    source = make_source(sources, cache_root, url, timeout=0.3)
    with pytest.raises(SourceUnavailable, match=r"no answer within 0\.3s"):
        fetch(source)


def test_not_a_repository_is_rejected(
    tmp_path: Path,
    config_repo: GitRepo,
    git_daemon: GitDaemon,
    http_server: GitHttpServer,
    cache_root: Path,
    sources: list[GitSource],
    token_env: str,
) -> None:
    cases = [
        (str(tmp_path / "nowhere"), {}),
        (git_daemon.url("nope"), {}),
        (http_server.url("nope"), {"auth": AuthConfig(token_env=token_env)}),
    ]
    for url, kwargs in cases:
        source = make_source(sources, cache_root, url, **kwargs)
        with pytest.raises(SourceRejected, match=r"sources\[platform\]\.url"):
            fetch(source)


def test_auth_that_does_not_fit_the_transport(
    config_repo: GitRepo, git_daemon: GitDaemon, cache_root: Path, sources: list[GitSource]
) -> None:
    source = make_source(
        sources, cache_root, git_daemon.url("config"), auth=AuthConfig(token_env="GIT_TOKEN")
    )
    with pytest.raises(SourceRejected, match=r"sources\[platform\]\.auth\.token_env: .*http"):
        fetch(source)


def test_read_tree_missing_path(
    config_repo: GitRepo, git_daemon: GitDaemon, cache_root: Path, sources: list[GitSource]
) -> None:
    source = make_source(sources, cache_root, git_daemon.url("config"))
    rev = fetch(source)
    for prefix in ("apps/x", "apps/web/base/service.yaml/deeper", "/nope/"):
        with pytest.raises(SourceRejected) as err:
            source.read_tree(rev.commit, prefix)
        shown = prefix.strip("/")
        assert f"path '{shown}' does not exist at commit {rev.commit[:7]}" in str(err.value)
    with pytest.raises(SourceRejected, match=r"no '\.\.'"):
        source.read_tree(rev.commit, "apps/../..")


def test_read_tree_unknown_commit(
    config_repo: GitRepo, git_daemon: GitDaemon, cache_root: Path, sources: list[GitSource]
) -> None:
    source = make_source(sources, cache_root, git_daemon.url("config"))
    with pytest.raises(SourceRejected, match="nothing fetched yet"):
        source.read_tree("0" * 40, ".")
    fetch(source)
    with pytest.raises(SourceRejected, match="commit 0000000 is not in the cache"):
        source.read_tree("0" * 40, ".")


def test_packs_are_consolidated_after_many_fetches(
    config_repo: GitRepo, git_daemon: GitDaemon, cache_root: Path, sources: list[GitSource]
) -> None:
    source = make_source(sources, cache_root, git_daemon.url("config"), repack_after=3)
    commits = [fetch(source).commit]
    for i in range(5):
        config_repo.write("apps/web/base/service.yaml", f"kind: Service\nname: web\nrev: {i}\n")
        commits.append(config_repo.commit(f"rev {i}"))
        config_repo.push()
        assert fetch(source).commit == commits[-1]
        assert packs(source) <= 3
        # the reader stays open across repacks that delete the packs it had open
        assert source.read_tree(commits[-1], "apps/web/base")["apps/web/base/service.yaml"] == (
            f"kind: Service\nname: web\nrev: {i}\n".encode()
        )
    for i, commit in enumerate(commits[1:]):
        files = source.read_tree(commit, "apps/web/base")
        assert files["apps/web/base/service.yaml"].endswith(f"rev: {i}\n".encode())
    assert source.read_tree(commits[0], "apps/web/base")["apps/web/base/task.yaml"] == (
        TASK_YAML.encode()
    )


def test_copied_and_removed_files_show_up_in_the_next_revision(
    tmp_path: Path,
    config_repo: GitRepo,
    git_daemon: GitDaemon,
    cache_root: Path,
    sources: list[GitSource],
) -> None:
    template = tmp_path / "template"
    (template / "base").mkdir(parents=True)
    (template / "base" / "service.yaml").write_text("kind: Service\nname: worker\n")
    config_repo.copy_tree(template, "apps/worker")
    config_repo.remove("apps/api")
    commit = config_repo.commit("add worker, drop api")
    config_repo.push()
    source = make_source(sources, cache_root, git_daemon.url("config"))

    assert fetch(source).commit == commit

    files = source.read_tree(commit, "apps")
    assert files["apps/worker/base/service.yaml"] == b"kind: Service\nname: worker\n"
    assert not any(path.startswith("apps/api/") for path in files)


def test_concurrent_fetches_share_one_download(
    config_repo: GitRepo, git_daemon: GitDaemon, cache_root: Path, sources: list[GitSource]
) -> None:
    source = make_source(sources, cache_root, git_daemon.url("config"))
    results: list[Revision] = []
    fetched: list[bool] = []

    async def poll() -> None:
        results.append(await source.fetch())
        assert source.last_fetch is not None
        fetched.append(source.last_fetch.fetched)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(poll)

    anyio.run(main)

    assert {r.commit for r in results} == {config_repo.head()}
    assert packs(source) == 1


def test_fetch_is_logged(
    config_repo: GitRepo, git_daemon: GitDaemon, cache_root: Path, sources: list[GitSource]
) -> None:
    source = make_source(sources, cache_root, git_daemon.url("config"))
    with structlog.testing.capture_logs() as logs:
        fetch(source)
        fetch(source)
    events = [e for e in logs if e["event"] == "source.fetch"]
    assert [(e["source"], e["commit"], e["fetched"]) for e in events] == [
        ("platform", config_repo.head(), True),
        ("platform", config_repo.head(), False),
    ]
    assert all(e["duration"] >= 0 for e in events)
