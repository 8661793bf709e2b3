"""Signed commits: real keys (gpg, ssh-keygen) sign real commits served by ``git daemon``.

Each test publishes commits, fetches them with :class:`GitSource` and checks them
with :class:`Verifier` as the source stage does: a signed commit passes; unsigned,
unknown key, tampered, expired and revoked keys are refused each with its own
reason and a message naming the commit, the signer and the config key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.gitserver import GitDaemon, GitRepo
from support.signing import GpgSigner, SshSigner, stop_signing, tamper

from gitopsd.config import Config, SourceConfig, parse_config
from gitopsd.engine.sources import SourceSet
from gitopsd.errors import ConfigError, SignatureRejected, SourceRejected
from gitopsd.model import Revision
from gitopsd.source.git import GitSource
from gitopsd.source.verify import Reason, Verdict, Verifier

from .helpers import fetch

EPOCH = 1_700_000_000  # the test repositories' clock (support.gitserver)


@dataclass
class Keys:
    trusted: GpgSigner
    stranger: GpgSigner
    expired: GpgSigner


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    root = tmp_path_factory.mktemp("gpg")
    return Keys(
        trusted=GpgSigner(root / "trusted", "alice"),
        stranger=GpgSigner(root / "stranger", "mallory"),
        # Valid for two days around the repositories' clock in 2023: expired by now.
        expired=GpgSigner(root / "expired", "olivia", expire="2d", at=EPOCH - 86400),
    )


@pytest.fixture
def made(tmp_path: Path) -> Iterator[list[GitSource]]:
    sources: list[GitSource] = []
    yield sources
    for s in sources:
        s.close()


@pytest.fixture
def served(config_repo: GitRepo, git_daemon: GitDaemon) -> tuple[GitRepo, str]:
    return config_repo, git_daemon.url("config")


class Checked:
    """A source with verification, fetched and checked after each push."""

    def __init__(
        self, repo: GitRepo, url: str, cache: Path, made: list[GitSource], **verify: Any
    ) -> None:
        self.repo = repo
        tag = verify.pop("_tag", None)
        ref: dict[str, str] = {"tag": tag} if tag else {"branch": "main"}
        self.config = SourceConfig(name="platform", url=url, timeout=10, verify=verify, **ref)
        self.source = GitSource(self.config, cache)
        made.append(self.source)
        self.verifier = Verifier(self.config)

    def push_and_check(self) -> tuple[Revision, Verdict]:
        self.repo.push()
        revision = fetch(self.source)
        return revision, self.verifier.check(self.source, revision)

    def refused(self, reason: Reason) -> SignatureRejected:
        with pytest.raises(SignatureRejected) as caught:
            self.push_and_check()
        assert caught.value.reason == reason, str(caught.value)
        return caught.value


def gpg_source(
    served: tuple[GitRepo, str], tmp_path: Path, made: list[GitSource], *signers: GpgSigner
) -> Checked:
    files = [s.write_public_key(tmp_path / f"{s.name}.asc") for s in signers]
    repo, url = served
    return Checked(repo, url, tmp_path / "cache", made, mode="gpg", keys=files)


# -- gpg ------------------------------------------------------------------------------------


def test_a_gpg_signed_commit_verifies_once_and_is_remembered(
    served: tuple[GitRepo, str], tmp_path: Path, made: list[GitSource], keys: Keys
) -> None:
    checked = gpg_source(served, tmp_path, made, keys.trusted)
    keys.trusted.sign_commits(checked.repo)
    checked.repo.write("apps/web/base/service.yaml", "kind: Service\nname: web\n# signed\n")
    commit = checked.repo.commit("web: signed")
    revision, verdict = checked.push_and_check()
    assert revision.commit == commit
    assert verdict.reason is Reason.VERIFIED
    assert keys.trusted.fingerprint in verdict.signer
    assert checked.verifier.runs == 1
    _again, verdict = checked.push_and_check()  # the next poll: same commit, no gpg run
    assert verdict.ok
    assert checked.verifier.runs == 1


def test_an_unsigned_commit_is_refused_naming_the_commit_and_the_missing_signature(
    served: tuple[GitRepo, str], tmp_path: Path, made: list[GitSource], keys: Keys
) -> None:
    checked = gpg_source(served, tmp_path, made, keys.trusted)
    commit = checked.repo.commit("web: unsigned")
    error = checked.refused(Reason.UNSIGNED)
    assert f"commit {commit[:12]} of refs/heads/main is not signed" in str(error)
    assert "sources[platform].verify.mode = 'gpg' requires a signature" in str(error)
    assert error.signer == ""


def test_a_commit_signed_by_an_untrusted_key_is_refused_naming_the_key(
    served: tuple[GitRepo, str], tmp_path: Path, made: list[GitSource], keys: Keys
) -> None:
    checked = gpg_source(served, tmp_path, made, keys.trusted)
    keys.stranger.sign_commits(checked.repo)
    commit = checked.repo.commit("web: signed by mallory")
    error = checked.refused(Reason.UNKNOWN_KEY)
    text = str(error)
    assert f"commit {commit[:12]} of refs/heads/main is signed by key 0x" in text
    assert keys.stranger.fingerprint[-16:] in text  # gpg names the key by its id
    assert "which is not trusted (sources[platform].verify.keys" in text


def test_a_tampered_commit_is_refused_as_a_bad_signature(
    served: tuple[GitRepo, str], tmp_path: Path, made: list[GitSource], keys: Keys
) -> None:
    checked = gpg_source(served, tmp_path, made, keys.trusted)
    keys.trusted.sign_commits(checked.repo)
    checked.repo.commit("web: scale to 2")
    _revision, verdict = checked.push_and_check()
    assert verdict.ok
    forged = tamper(checked.repo, "web: scale to 200")
    error = checked.refused(Reason.BAD_SIGNATURE)
    assert f"commit {forged[:12]} of refs/heads/main has a signature by key 0x" in str(error)
    assert keys.trusted.fingerprint[-16:] in error.signer
    assert "changed after it was signed" in str(error)


def test_a_commit_signed_by_a_key_that_has_expired_since_is_refused(
    served: tuple[GitRepo, str], tmp_path: Path, made: list[GitSource], keys: Keys
) -> None:
    checked = gpg_source(served, tmp_path, made, keys.trusted, keys.expired)
    keys.expired.sign_commits(checked.repo)  # signs in 2023, while the key was valid
    checked.repo.commit("web: signed by olivia")
    error = checked.refused(Reason.EXPIRED_KEY)
    assert keys.expired.fingerprint in error.signer
    assert "which has expired (expired on 2023-11-" in str(error)


def test_a_commit_signed_by_a_revoked_key_is_refused(
    served: tuple[GitRepo, str], tmp_path: Path, made: list[GitSource]
) -> None:
    revoked = GpgSigner(tmp_path / "revoked", "rex")
    repo, _url = served
    revoked.sign_commits(repo)
    repo.commit("web: signed by rex")
    revoked.revoke()  # after signing: gpg does not sign with a revoked key
    checked = gpg_source(served, tmp_path, made, revoked)
    error = checked.refused(Reason.REVOKED_KEY)
    assert revoked.fingerprint in error.signer
    assert "which is revoked" in str(error)


def test_a_new_trusted_key_is_seen_without_a_restart(
    served: tuple[GitRepo, str], tmp_path: Path, made: list[GitSource], keys: Keys
) -> None:
    checked = gpg_source(served, tmp_path, made, keys.trusted)
    keys.stranger.sign_commits(checked.repo)
    checked.repo.commit("web: signed by mallory")
    checked.refused(Reason.UNKNOWN_KEY)
    keys.stranger.write_public_key(tmp_path / "alice.asc")  # the trusted file now says so
    _revision, verdict = checked.push_and_check()
    assert verdict.ok
    assert checked.verifier.runs == 2


def test_trusted_keys_from_an_environment_variable(
    served: tuple[GitRepo, str],
    tmp_path: Path,
    made: list[GitSource],
    keys: Keys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo, url = served
    checked = Checked(repo, url, tmp_path / "cache", made, mode="gpg", keys_env=["SIGNERS"])
    keys.trusted.sign_commits(repo)
    repo.commit("web: signed")
    with pytest.raises(SourceRejected, match=r"environment variable SIGNERS \(sources\[platform"):
        checked.push_and_check()
    monkeypatch.setenv("SIGNERS", keys.trusted.public_key())
    assert checked.push_and_check()[1].ok


def test_a_key_file_without_a_key_is_an_error_naming_the_key(
    served: tuple[GitRepo, str], tmp_path: Path, made: list[GitSource], keys: Keys
) -> None:
    checked = gpg_source(served, tmp_path, made, keys.trusted)
    (tmp_path / "alice.asc").write_text("not a key\n")
    keys.trusted.sign_commits(checked.repo)
    checked.repo.commit("web: signed")
    with pytest.raises(SourceRejected, match=r"sources\[platform\]\.verify\.keys\[0\] \("):
        checked.push_and_check()


# -- ssh ------------------------------------------------------------------------------------


def ssh_source(
    served: tuple[GitRepo, str], tmp_path: Path, made: list[GitSource], lines: str, **kw: Any
) -> Checked:
    signers = tmp_path / "allowed_signers"
    signers.write_text(lines)
    repo, url = served
    return Checked(repo, url, tmp_path / "cache", made, mode="ssh", allowed_signers=signers, **kw)


def test_an_ssh_signed_commit_verifies_with_its_principal(
    served: tuple[GitRepo, str], tmp_path: Path, made: list[GitSource]
) -> None:
    alice = SshSigner(tmp_path / "ssh", "alice@example.com")
    checked = ssh_source(served, tmp_path, made, alice.allowed_signers_line())
    alice.sign_commits(checked.repo)
    checked.repo.commit("web: ssh-signed")
    _revision, verdict = checked.push_and_check()
    assert verdict.reason is Reason.VERIFIED
    assert verdict.signer.startswith("SSH key SHA256:")
    assert verdict.signer.endswith("(alice@example.com)")


def test_ssh_refusals_unknown_tampered_expired_revoked_and_unsigned(
    served: tuple[GitRepo, str], tmp_path: Path, made: list[GitSource]
) -> None:
    alice = SshSigner(tmp_path / "ssh", "alice@example.com")
    mallory = SshSigner(tmp_path / "ssh", "mallory@example.com")
    old = SshSigner(tmp_path / "ssh", "old@example.com")
    gone = SshSigner(tmp_path / "ssh", "gone@example.com")
    revoked = tmp_path / "revoked_keys"
    revoked.write_text(gone.public + "\n")
    lines = (
        alice.allowed_signers_line()
        + old.allowed_signers_line('valid-before="20240101"')
        + gone.allowed_signers_line()
    )
    checked = ssh_source(served, tmp_path, made, lines, revoked_keys=revoked)
    repo = checked.repo

    mallory.sign_commits(repo)
    commit = repo.commit("web: signed by mallory")
    error = checked.refused(Reason.UNKNOWN_KEY)
    assert f"commit {commit[:12]} of refs/heads/main is signed by SSH key SHA256:" in str(error)
    assert "not trusted (sources[platform].verify.allowed_signers)" in str(error)

    alice.sign_commits(repo)
    repo.commit("web: signed by alice")
    assert checked.push_and_check()[1].ok
    tamper(repo, "web: signed by alice, honest")
    assert "(alice@example.com)" in checked.refused(Reason.BAD_SIGNATURE).signer

    old.sign_commits(repo)
    repo.commit("web: signed by a key valid until 2024")
    assert "valid-before" in str(checked.refused(Reason.EXPIRED_KEY))

    gone.sign_commits(repo)
    repo.commit("web: signed by a revoked key")
    assert "sources[platform].verify.revoked_keys" in str(checked.refused(Reason.REVOKED_KEY))

    stop_signing(repo)
    repo.commit("web: unsigned")
    assert "requires a signature" in str(checked.refused(Reason.UNSIGNED))


def test_a_signature_of_the_other_kind_names_the_mode(
    served: tuple[GitRepo, str], tmp_path: Path, made: list[GitSource], keys: Keys
) -> None:
    alice = SshSigner(tmp_path / "ssh", "alice@example.com")
    checked = gpg_source(served, tmp_path, made, keys.trusted)
    alice.sign_commits(checked.repo)
    checked.repo.commit("web: ssh-signed")
    error = checked.refused(Reason.UNKNOWN_KEY)
    assert "is signed by SSH key SHA256:" in str(error)


# -- tags -----------------------------------------------------------------------------------


def test_tags_mode_checks_the_signed_annotated_tag_not_the_commit(
    served: tuple[GitRepo, str], tmp_path: Path, made: list[GitSource], keys: Keys
) -> None:
    repo, url = served
    key = keys.trusted.write_public_key(tmp_path / "alice.asc")
    checked = Checked(
        repo, url, tmp_path / "cache", made, mode="gpg", keys=[key], tags=True, _tag="v1"
    )
    commit = repo.commit("web: release")  # unsigned: the tag is what is checked
    keys.trusted.sign_commits(repo)
    repo.tag("v1", annotated=True)
    revision, verdict = checked.push_and_check()
    assert revision.commit == commit
    assert verdict.ok

    stop_signing(repo)
    repo.git("tag", "-d", "v1")
    repo.tag("v1", annotated=True, message="re-tagged, unsigned")
    error = checked.refused(Reason.UNSIGNED)
    assert f"tag 'v1' (commit {commit[:12]}) is not signed" in str(error)
    assert "git tag -s" in str(error)

    repo.git("tag", "-d", "v1")
    repo.tag("v1")
    assert "is a lightweight tag" in str(checked.refused(Reason.UNSIGNED))


# -- config and the source stage ------------------------------------------------------------


def test_verify_settings_are_checked_when_the_config_loads() -> None:
    def load(verify: dict[str, Any], **source: Any) -> Config:
        src = {"name": "platform", "url": "/srv/git", "verify": verify, **source}
        return parse_config({"sources": [src], "apps": []})

    with pytest.raises(ConfigError, match=r"sources\[0\]\.verify: mode gpg needs"):
        load({"mode": "gpg"})
    with pytest.raises(ConfigError, match=r"mode ssh needs allowed_signers"):
        load({"mode": "ssh", "keys": ["a.asc"]})
    with pytest.raises(ConfigError, match=r"verify.tags = true needs tag"):
        load({"mode": "gpg", "keys": ["a.asc"], "tags": True})
    loaded = load({"mode": "ssh", "allowed_signers": "signers"}, tag="v1")
    verify = loaded.sources[0].verify
    assert verify is not None
    assert verify.mode == "ssh"


def test_the_source_stage_refuses_an_unsigned_commit_for_every_app_of_the_source(
    served: tuple[GitRepo, str], tmp_path: Path, keys: Keys
) -> None:
    repo, url = served
    key = keys.trusted.write_public_key(tmp_path / "alice.asc")
    config = parse_config(
        {
            "daemon": {"state_dir": str(tmp_path / "state")},
            "sources": [
                {"name": "platform", "url": url, "verify": {"mode": "gpg", "keys": [str(key)]}}
            ],
            "apps": [],
        }
    )
    sources = SourceSet(config)
    try:
        with pytest.raises(SignatureRejected, match="is not signed"):
            anyio.run(sources.revision, "platform")
        assert isinstance(sources.current("platform"), SignatureRejected)
        keys.trusted.sign_commits(repo)
        signed = repo.commit("signed")
        repo.push()
        assert anyio.run(sources.refresh, "platform").commit == signed
        # Offline, the cached commit is checked too.
        offline = SourceSet(config, offline=True)
        try:
            assert anyio.run(offline.revision, "platform").commit == signed
        finally:
            offline.close()
    finally:
        sources.close()
