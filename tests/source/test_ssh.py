"""GitSource over SSH: the ssh command line, and real fetches through a stand-in ``ssh``.

There is no sshd here. The command line is unit-tested, and the whole SSH path
(dulwich's SSH client, our command, the remote ``git-upload-pack``) runs with
an ``ssh`` script earlier on PATH that records its arguments and runs the
remote command locally, the way sshd would. The real ``ssh`` binary is used
for the connection-refused case.
"""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from support.gitserver import GitRepo, free_port

from gitopsd.config import AuthConfig, SourceConfig
from gitopsd.errors import SourceRejected, SourceUnavailable
from gitopsd.source.auth import Transport, resolve_credentials, ssh_command
from gitopsd.source.git import GitSource

FAKE_SSH = """#!/bin/sh
# Stand-in for ssh: log the arguments, then run the remote command here.
for arg in "$@"; do printf '%s\\n' "$arg" >> "{log}"; done
printf -- '--\\n' >> "{log}"
prev=""
for arg in "$@"; do
  case "$arg" in
    "SetEnv GIT_PROTOCOL="*)
      [ "$prev" = "-o" ] && export GIT_PROTOCOL="${{arg#SetEnv GIT_PROTOCOL=}}";;
  esac
  prev="$arg"
done
{body}
"""


@pytest.fixture
def ssh_files(tmp_path: Path) -> tuple[Path, Path]:
    """A (dummy) private key and known_hosts file."""
    key = tmp_path / "keys" / "id_ed25519"
    key.parent.mkdir()
    key.write_text("not really a key\n")
    key.chmod(0o600)
    known_hosts = tmp_path / "keys" / "known_hosts"
    known_hosts.write_text("")
    return key, known_hosts


def install_fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> Path:
    """Put an ``ssh`` script first on PATH; return the file it logs its arguments to."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    log = tmp_path / "ssh-args.log"
    script = bindir / "ssh"
    script.write_text(FAKE_SSH.format(log=log, body=body))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return log


@pytest.fixture
def relay_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ssh that runs the requested ``git-upload-pack`` locally."""
    return install_fake_ssh(
        tmp_path, monkeypatch, 'for last in "$@"; do :; done\nexec sh -c "$last"'
    )


@pytest.fixture
def sources() -> Iterator[list[GitSource]]:
    made: list[GitSource] = []
    yield made
    for s in made:
        s.close()


def ssh_source(
    sources: list[GitSource], cache_root: Path, url: str, key: Path, known_hosts: Path
) -> GitSource:
    auth = AuthConfig(ssh_key_file=key, known_hosts_file=known_hosts)
    source = GitSource(SourceConfig(name="platform", url=url, auth=auth, timeout=10), cache_root)
    sources.append(source)
    return source


def test_ssh_command_line() -> None:
    command = ssh_command(
        key_file=Path("/etc/gitopsd/deploy key"),
        known_hosts_file=Path("/etc/gitopsd/known_hosts"),
        timeout=10,
    )
    assert shlex.split(command) == [
        "ssh",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=/etc/gitopsd/known_hosts",
        "-i", "/etc/gitopsd/deploy key",
        "-o", "IdentitiesOnly=yes",
        "-o", "ConnectTimeout=10",
        "-o", "ServerAliveInterval=4",
        "-o", "ServerAliveCountMax=3",
    ]  # fmt: skip


def test_ssh_command_without_key_uses_the_defaults() -> None:
    assert ssh_command() == "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes"


def test_ssh_credentials_come_from_the_config(ssh_files: tuple[Path, Path]) -> None:
    key, known_hosts = ssh_files
    config = SourceConfig(
        name="platform",
        url="git@github.com:org/config.git",
        auth=AuthConfig(ssh_key_file=key, known_hosts_file=known_hosts),
        timeout=5,
    )
    creds = resolve_credentials(config, Transport.SSH)
    assert creds.ssh_command == ssh_command(key_file=key, known_hosts_file=known_hosts, timeout=5)
    assert creds.username is None
    assert creds.password is None


def test_unreadable_key_file_names_the_key(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    config = SourceConfig(
        name="platform", url="ssh://git@host/org/repo.git", auth=AuthConfig(ssh_key_file=missing)
    )
    with pytest.raises(SourceRejected) as err:
        resolve_credentials(config, Transport.SSH)
    assert str(err.value) == (
        f"sources[platform].auth.ssh_key_file: cannot read {missing}: No such file or directory"
    )


@pytest.mark.parametrize("form", ["ssh-url", "scp-like"])
def test_fetch_over_ssh(
    form: str,
    relay_ssh: Path,
    ssh_files: tuple[Path, Path],
    config_repo: GitRepo,
    git_root: Path,
    cache_root: Path,
    sources: list[GitSource],
) -> None:
    key, known_hosts = ssh_files
    bare = git_root / "config.git"
    if form == "ssh-url":
        url = f"ssh://git@gitserver.test:2222{bare}"
    else:
        url = f"git@gitserver.test:{bare}"
    source = ssh_source(sources, cache_root, url, key, known_hosts)

    rev = anyio.run(source.fetch)

    assert rev.commit == config_repo.head()
    assert "apps/web/base/service.yaml" in source.read_tree(rev.commit, "apps/web")
    calls = relay_ssh.read_text().split("--\n")[:-1]
    assert len(calls) == 2  # list refs, then fetch
    args = calls[-1].splitlines()
    assert args[args.index("-i") + 1] == str(key)
    for option in (
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        f"UserKnownHostsFile={known_hosts}",
        "IdentitiesOnly=yes",
    ):
        assert option in args
    if form == "ssh-url":
        assert args[args.index("-p") + 1] == "2222"
    else:
        assert "-p" not in args
    assert args[-2] == "git@gitserver.test"
    assert args[-1] == f"git-upload-pack '{bare}'"

    # a second poll finds the same commit and fetches nothing
    anyio.run(source.fetch)
    assert source.last_fetch is not None
    assert not source.last_fetch.fetched


@pytest.mark.parametrize(
    ("stderr", "error", "expected"),
    [
        ("git@gitserver.test: Permission denied (publickey).", SourceRejected, "authorised"),
        ("Host key verification failed.", SourceRejected, "known_hosts"),
        (
            "ssh: connect to host gitserver.test port 22: Connection refused",
            SourceUnavailable,
            "cannot reach the remote",
        ),
        (
            "ssh: Could not resolve hostname gitserver.test: Name or service not known",
            SourceUnavailable,
            "cannot reach the remote",
        ),
    ],
)
def test_ssh_failures_are_classified(
    stderr: str,
    error: type[Exception],
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ssh_files: tuple[Path, Path],
    cache_root: Path,
    sources: list[GitSource],
) -> None:
    install_fake_ssh(tmp_path, monkeypatch, f"echo '{stderr}' >&2\nexit 255")
    key, known_hosts = ssh_files
    source = ssh_source(sources, cache_root, "git@gitserver.test:org/config.git", key, known_hosts)

    with pytest.raises(error) as err:
        anyio.run(source.fetch)

    message = str(err.value)
    assert message.startswith("source 'platform' (git@gitserver.test:org/config.git): ")
    assert stderr.rstrip(".") in message
    assert expected in message


def test_real_ssh_connection_refused_is_temporary(
    ssh_files: tuple[Path, Path], cache_root: Path, sources: list[GitSource]
) -> None:
    key, known_hosts = ssh_files
    url = f"ssh://git@127.0.0.1:{free_port()}/org/config.git"
    source = ssh_source(sources, cache_root, url, key, known_hosts)
    with pytest.raises(SourceUnavailable, match="Connection refused"):
        anyio.run(source.fetch)
