"""Real signing keys for the signed-commit tests: gpg and ssh-keygen, generated in the test.

:class:`GpgSigner` keeps its own ``GNUPGHOME`` (batch mode, no passphrase) and a
``gpg`` wrapper script git runs as ``gpg.program``, so a key can sign at a faked
time (``--faked-system-time``): that is how a key that has expired by now signs
a commit while it was still valid. :class:`SshSigner` is an ed25519 key pair.
Both configure a work repository so that its commits (``GitRepo.commit``) are
signed. :func:`tamper` rewrites a commit's message keeping its signature, as an
attacker with push access but no key would.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

from support.gitserver import GitRepo

GPG = shutil.which("gpg") or "gpg"
SSH_KEYGEN = shutil.which("ssh-keygen") or "ssh-keygen"


def _gpg_time(epoch: int) -> str:
    at = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)
    return at.strftime("%Y%m%dT%H%M%S") + "!"  # "!": the clock stands still


class GpgSigner:
    """An OpenPGP key in its own keyring, optionally living at a faked time."""

    def __init__(
        self, home: Path, name: str, *, expire: str = "never", at: int | None = None
    ) -> None:
        self.home = home
        self.name = name
        self.at = at
        home.mkdir(parents=True, mode=0o700)
        self._gpg("--quick-gen-key", f"{name} <{name}@example.com>", "ed25519", "sign", expire)
        listing = self._gpg("--with-colons", "--list-keys", name)
        self.fingerprint = re.findall(r"^fpr:+([0-9A-F]{40}):", listing, re.M)[0]
        self.program = home / "gpg-wrapper"
        faked = f" --faked-system-time {_gpg_time(at)}" if at is not None else ""
        self.program.write_text(f'#!/bin/sh\nexec {GPG} --homedir "{home}"{faked} "$@"\n')
        self.program.chmod(self.program.stat().st_mode | stat.S_IXUSR)

    def _gpg(self, *args: str) -> str:
        cmd = [GPG, "--homedir", str(self.home), "--batch", "--passphrase", ""]
        if self.at is not None:
            cmd += ["--faked-system-time", _gpg_time(self.at)]
        proc = subprocess.run(
            [*cmd, *args], capture_output=True, text=True, check=False, env=_clean_env()
        )
        if proc.returncode != 0:
            raise RuntimeError(f"gpg {' '.join(args)} failed: {proc.stderr}")
        return proc.stdout

    def public_key(self) -> str:
        """The armored public key, as a user exports it for the trusted keys."""
        return self._gpg("--armor", "--export", self.fingerprint)

    def write_public_key(self, path: Path) -> Path:
        path.write_text(self.public_key())
        return path

    def revoke(self) -> None:
        """Import the revocation certificate gpg made with the key: the key is revoked."""
        cert = self.home / "openpgp-revocs.d" / f"{self.fingerprint}.rev"
        text = cert.read_text().replace(
            ":-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----BEGIN PGP PUBLIC KEY BLOCK-----"
        )
        revocation = self.home / "revocation.asc"
        revocation.write_text(text)
        self._gpg("--import", str(revocation))

    def sign_commits(self, repo: GitRepo) -> None:
        """The repository's next commits and tags are signed with this key."""
        repo.git("config", "gpg.format", "openpgp")
        repo.git("config", "gpg.program", str(self.program))
        repo.git("config", "user.signingkey", self.fingerprint)
        repo.git("config", "commit.gpgsign", "true")
        repo.git("config", "tag.gpgsign", "true")


class SshSigner:
    """An ed25519 SSH key pair (no passphrase) and its ``allowed_signers`` line."""

    def __init__(self, directory: Path, principal: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.key = directory / principal.replace("@", "_at_").replace(".", "_")
        self.principal = principal
        subprocess.run(
            [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", principal, "-f", str(self.key)],
            check=True,
            capture_output=True,
        )
        self.public = " ".join(Path(f"{self.key}.pub").read_text().split()[:2])

    def allowed_signers_line(self, options: str = "") -> str:
        return f"{self.principal} {options + ' ' if options else ''}{self.public}\n"

    def sign_commits(self, repo: GitRepo) -> None:
        repo.git("config", "gpg.format", "ssh")
        repo.git("config", "gpg.ssh.program", SSH_KEYGEN)
        repo.git("config", "user.signingkey", str(self.key))
        repo.git("config", "commit.gpgsign", "true")
        repo.git("config", "tag.gpgsign", "true")


def stop_signing(repo: GitRepo) -> None:
    repo.git("config", "commit.gpgsign", "false")
    repo.git("config", "tag.gpgsign", "false")


def tamper(repo: GitRepo, message: str) -> str:
    """Rewrite HEAD's message keeping its signature header; HEAD moves to the new object."""
    raw = repo.git("cat-file", "commit", "HEAD") + "\n"
    head, _, _old = raw.partition("\n\n")
    assert "gpgsig" in head, "HEAD is not signed"
    forged = f"{head}\n\n{message}\n"
    proc = subprocess.run(
        ["git", "hash-object", "-t", "commit", "-w", "--stdin"],
        cwd=repo.path,
        input=forged.encode(),
        capture_output=True,
        check=True,
    )
    sha = proc.stdout.decode().strip()
    repo.git("update-ref", "refs/heads/main", sha)
    repo.git("reset", "-q", "--hard", sha)
    return sha


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("GNUPG", "GPG_"))}
