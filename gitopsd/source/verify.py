"""Signed commits: whoever can push to the branch can deploy, unless the commit must be signed.

With ``[[sources]] verify = { mode = "gpg" | "ssh", ... }`` a commit is applied only
when its signature verifies against the keys the configuration trusts, checked
on the exact payload git signs: the raw commit object without its ``gpgsig``
header (or, with ``verify.tags``, the raw annotated tag without its trailing
signature), as dulwich read it from the cache (:meth:`GitSource.signed_object`).

The real tools do the cryptography: ``gpg`` through python-gnupg, with a
temporary home directory holding only the trusted public keys (never the user's
keyring; no agent, no key server), and ``ssh-keygen -Y find-principals`` /
``-Y verify`` with the configured ``allowed_signers`` file, as git runs them.
Keys are checked against the time of verification, not the commit's (untrusted)
date: a key that has expired or was revoked no longer deploys anything.

Every failure is a :class:`~gitopsd.errors.SignatureRejected` (permanent) whose
:class:`Reason` tells unsigned, unknown key, bad signature (a tampered commit),
expired key and revoked key apart, and whose message names the commit, the
signer (or its absence) and the config key to look at. Verdicts are kept per
object id and trusted-key material, so a poll that finds the same commit does
not run gpg again, and a change of the trusted keys is seen at once.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import os
import struct
import subprocess
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import gnupg
import structlog
from dulwich.errors import ObjectFormatException
from dulwich.objects import Commit, Tag

from gitopsd.config import SourceConfig, VerifyConfig
from gitopsd.errors import SignatureRejected, SourceRejected
from gitopsd.model import Revision

log = structlog.get_logger(__name__)

_PGP_BEGIN = (b"-----BEGIN PGP SIGNATURE-----", b"-----BEGIN PGP MESSAGE-----")
_SSH_BEGIN = b"-----BEGIN SSH SIGNATURE-----"
_NAMESPACE = "git"
"""The namespace git signs commits and tags in (``ssh-keygen -n git``)."""
_TOOL_TIMEOUT = 30.0
"""Seconds one gpg or ssh-keygen run may take."""
_REMEMBERED = 512
"""Verdicts kept in memory (one per commit seen)."""


class Reason(StrEnum):
    """Why a signature was accepted or refused; each refusal is a distinct reason."""

    VERIFIED = "verified"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown-key"
    BAD_SIGNATURE = "bad-signature"
    EXPIRED_KEY = "expired-key"
    REVOKED_KEY = "revoked-key"


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one object's signature.

    ``signer`` names the key (``0x<fingerprint>`` or ``SHA256:...``, with the user
    id or principal when known), "" when unsigned; ``detail`` is the tool's own
    word on a refusal, for the log.
    """

    reason: Reason
    signer: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is Reason.VERIFIED


class SignedObjects(Protocol):
    """Where the raw objects come from (:class:`gitopsd.source.git.GitSource`)."""

    def signed_object(self, commit: str, *, tag: bool = False) -> Commit | Tag: ...


@dataclass(frozen=True)
class _Material:
    """The trusted keys as read now, and their digest (part of the verdict cache's key)."""

    gpg_keys: tuple[tuple[str, bytes], ...] = ()  # (config key, key data)
    allowed_signers: Path | None = None
    revoked_keys: Path | None = None
    digest: str = ""


class Verifier:
    """Checks the signatures of one source's commits against its ``verify`` settings.

    Blocking (runs gpg or ssh-keygen): call :meth:`check` from a worker thread.
    """

    def __init__(
        self, source: SourceConfig, *, gpg: str = "gpg", ssh_keygen: str = "ssh-keygen"
    ) -> None:
        if source.verify is None:
            raise ValueError(f"source {source.name!r} has no verify settings")
        self.source = source
        self.config: VerifyConfig = source.verify
        self._gpg = gpg
        self._ssh_keygen = ssh_keygen
        self._key = f"sources[{source.name}].verify"
        self._verdicts: OrderedDict[tuple[bytes, str], Verdict] = OrderedDict()
        self._lock = threading.Lock()
        #: How many times a tool actually ran a verification (the cache's misses).
        self.runs = 0

    # -- the check the source stage makes ---------------------------------------------

    def check(self, objects: SignedObjects, revision: Revision) -> Verdict:
        """Raise ``SignatureRejected`` unless ``revision``'s commit (or tag) verifies."""
        obj = objects.signed_object(revision.commit, tag=self.config.tags)
        what = self._what(revision, obj)
        if self.config.tags and not isinstance(obj, Tag):
            raise SignatureRejected(
                f"source {self.source.name!r}: {what} is a lightweight tag, which carries no "
                f"signature; {self._key}.tags requires a signed annotated tag "
                "(git tag -s), or set tags = false to verify the commit instead",
                reason=Reason.UNSIGNED,
                commit=revision.commit,
            )
        verdict = self.verdict(obj)
        if verdict.ok:
            log.debug(
                "source.signature_verified",
                source=self.source.name,
                commit=revision.commit,
                signer=verdict.signer,
            )
            return verdict
        log.warning(
            "source.signature_rejected",
            source=self.source.name,
            commit=revision.commit,
            reason=str(verdict.reason),
            signer=verdict.signer,
            detail=verdict.detail,
        )
        raise SignatureRejected(
            self._message(what, verdict),
            reason=verdict.reason,
            signer=verdict.signer,
            commit=revision.commit,
        )

    def _what(self, revision: Revision, obj: Commit | Tag) -> str:
        short = revision.commit[:12]
        if self.config.tags:
            return f"tag {self.source.tag!r} (commit {short})"
        return f"commit {short} of {revision.ref}"

    def _message(self, what: str, verdict: Verdict) -> str:
        cfg, key, src = self.config, self._key, f"source {self.source.name!r}"
        trusted = f"{key}.keys or {key}.keys_env" if cfg.mode == "gpg" else f"{key}.allowed_signers"
        sign = "git tag -s" if cfg.tags else "git commit -S"
        if verdict.reason is Reason.UNSIGNED:
            return (
                f"{src}: {what} is not signed, and {key}.mode = {cfg.mode!r} requires a "
                f"signature; nothing is applied: sign it ({sign}) with a trusted key and push"
            )
        if verdict.reason is Reason.UNKNOWN_KEY:
            return (
                f"{src}: {what} is signed by {verdict.signer} which is not trusted ({trusted}); "
                "nothing is applied: re-sign it with a trusted key, or add the signer's public "
                f"key to {trusted} if it is trusted"
            )
        if verdict.reason is Reason.EXPIRED_KEY:
            return (
                f"{src}: {what} is signed by {verdict.signer} which has expired "
                f"({verdict.detail}); nothing is applied: re-sign it with a valid key, or "
                f"extend the key's validity and update {trusted}"
            )
        if verdict.reason is Reason.REVOKED_KEY:
            where = f"{key}.revoked_keys" if cfg.mode == "ssh" else "the trusted key"
            return (
                f"{src}: {what} is signed by {verdict.signer} which is revoked ({where}); "
                "nothing is applied: re-sign it with a trusted key that is not revoked"
            )
        return (
            f"{src}: {what} has a signature by {verdict.signer or 'an unknown key'} that does "
            f"not verify ({verdict.detail}): the object was changed after it was signed, or "
            "the signature is damaged; nothing is applied: find out who pushed it, and push "
            "a correctly signed commit"
        )

    # -- verdicts ---------------------------------------------------------------------

    def verdict(self, obj: Commit | Tag) -> Verdict:
        """``obj``'s verdict, from memory when this object was checked with the same keys."""
        material = self._material()
        key = (obj.id, material.digest)
        with self._lock:
            found = self._verdicts.get(key)
            if found is not None:
                self._verdicts.move_to_end(key)
                return found
        verdict = self._verify(obj, material)
        with self._lock:
            self.runs += 1
            self._verdicts[key] = verdict
            while len(self._verdicts) > _REMEMBERED:
                self._verdicts.popitem(last=False)
        return verdict

    def _verify(self, obj: Commit | Tag, material: _Material) -> Verdict:
        try:
            payload, signature, _kind = obj.extract_signature()
        except ObjectFormatException as exc:
            return Verdict(Reason.BAD_SIGNATURE, detail=f"unreadable signature: {exc}")
        if not signature:
            return Verdict(Reason.UNSIGNED)
        if self.config.mode == "gpg":
            if signature.startswith(_SSH_BEGIN):
                signer = _ssh_signer(signature)[0] or "an SSH key"
                return Verdict(
                    Reason.UNKNOWN_KEY,
                    f"SSH key {signer}",
                    "an SSH signature, but verify.mode is gpg",
                )
            return self._verify_gpg(payload, signature, material)
        if signature.startswith(_PGP_BEGIN):
            return Verdict(
                Reason.UNKNOWN_KEY, "an OpenPGP key", "an OpenPGP signature, but verify.mode is ssh"
            )
        return self._verify_ssh(payload, signature, material)

    # -- trusted keys -----------------------------------------------------------------

    def _material(self) -> _Material:
        """Read the trusted keys now (files may be rotated while gitopsd runs)."""
        cfg, key = self.config, self._key
        digest = hashlib.sha256(cfg.mode.encode())
        if cfg.mode == "gpg":
            keys: list[tuple[str, bytes]] = []
            for i, path in enumerate(cfg.keys or ()):
                where = f"{key}.keys[{i}]"
                keys.append((f"{where} ({path})", _read(path, where)))
            for name in cfg.keys_env:
                value = os.environ.get(name)
                if not value:
                    raise SourceRejected(
                        f"source {self.source.name!r}: environment variable {name} "
                        f"({key}.keys_env) is not set or empty; set it to the trusted "
                        "armored public key"
                    )
                keys.append((f"{key}.keys_env {name}", value.encode("utf-8")))
            for _, data in keys:
                digest.update(hashlib.sha256(data).digest())
            return _Material(gpg_keys=tuple(keys), digest=digest.hexdigest())
        assert cfg.allowed_signers is not None  # the config's validator sees to it
        digest.update(_read(cfg.allowed_signers, f"{key}.allowed_signers"))
        if cfg.revoked_keys is not None:
            digest.update(b"\0revoked\0" + _read(cfg.revoked_keys, f"{key}.revoked_keys"))
        return _Material(
            allowed_signers=cfg.allowed_signers,
            revoked_keys=cfg.revoked_keys,
            digest=digest.hexdigest(),
        )

    # -- gpg --------------------------------------------------------------------------

    def _verify_gpg(self, payload: bytes, signature: bytes, material: _Material) -> Verdict:
        with tempfile.TemporaryDirectory(prefix="gitopsd-gpg-") as tmp:
            home = Path(tmp) / "home"
            home.mkdir(mode=0o700)
            try:
                gpg = gnupg.GPG(
                    gpgbinary=self._gpg,
                    gnupghome=str(home),
                    options=["--no-autostart", "--no-auto-key-retrieve", "--no-tty"],
                )
            except (OSError, ValueError, RuntimeError) as exc:
                raise SourceRejected(
                    f"source {self.source.name!r}: cannot run {self._gpg} for {self._key}.mode "
                    f"= 'gpg' ({exc}); install GnuPG (gpg) where gitopsd runs"
                ) from None
            for where, data in material.gpg_keys:
                imported = gpg.import_keys(data)
                if not imported.count:
                    raise SourceRejected(
                        f"source {self.source.name!r}: {where} holds no OpenPGP public key "
                        f"gpg can import ({imported.stderr.strip().splitlines()[-1:] or ''}); "
                        "export it with gpg --armor --export KEYID"
                    )
            sig_file = Path(tmp) / "signature.asc"
            sig_file.write_bytes(signature)
            result = gpg.verify_data(str(sig_file), payload)
            expiry = ""
            if result.key_status == "signing key has expired":
                fingerprint = result.pubkey_fingerprint or result.fingerprint
                expiry = next(
                    (str(k["expires"]) for k in gpg.list_keys() if k["fingerprint"] == fingerprint),
                    "",
                )
        return _gpg_verdict(result, expiry)

    # -- ssh --------------------------------------------------------------------------

    def _verify_ssh(self, payload: bytes, signature: bytes, material: _Material) -> Verdict:
        fingerprint, namespace = _ssh_signer(signature)
        if not fingerprint:
            return Verdict(Reason.BAD_SIGNATURE, detail="the SSH signature cannot be parsed")
        signer = f"SSH key {fingerprint}"
        if namespace != _NAMESPACE:
            return Verdict(
                Reason.BAD_SIGNATURE,
                signer,
                f"signed for namespace {namespace!r}, not {_NAMESPACE!r}",
            )
        assert material.allowed_signers is not None
        with tempfile.TemporaryDirectory(prefix="gitopsd-ssh-") as tmp:
            sig_file = Path(tmp) / "payload.sig"
            sig_file.write_bytes(signature)
            signers = str(material.allowed_signers)
            found = self._ssh(["-Y", "find-principals", "-s", str(sig_file), "-f", signers], b"")
            principals = found.stdout.decode("utf-8", "replace").split()
            if found.returncode != 0 or not principals:
                said = _said(found)
                if "expired" in said or "not yet valid" in said:
                    return Verdict(Reason.EXPIRED_KEY, signer, said)
                return Verdict(Reason.UNKNOWN_KEY, signer, said)
            signer = f"SSH key {fingerprint} ({principals[0]})"
            verify = ["-Y", "verify", "-f", signers, "-I", principals[0], "-n", _NAMESPACE]
            verify += ["-s", str(sig_file)]
            revoked = ["-r", str(material.revoked_keys)] if material.revoked_keys else []
            checked = self._ssh([*verify, *revoked], payload)
            if checked.returncode == 0:
                return Verdict(Reason.VERIFIED, signer)
            said = _said(checked)
            if revoked and self._ssh(verify, payload).returncode == 0:
                return Verdict(Reason.REVOKED_KEY, signer, said)
        if "expired" in said or "not yet valid" in said:
            return Verdict(Reason.EXPIRED_KEY, signer, said)
        return Verdict(Reason.BAD_SIGNATURE, signer, said)

    def _ssh(self, args: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(
                [self._ssh_keygen, *args],
                input=stdin,
                capture_output=True,
                timeout=_TOOL_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SourceRejected(
                f"source {self.source.name!r}: cannot run {self._ssh_keygen} for "
                f"{self._key}.mode = 'ssh' ({exc}); install OpenSSH 8.2 or later "
                "(ssh-keygen -Y) where gitopsd runs"
            ) from None


def _read(path: Path, where: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SourceRejected(
            f"cannot read {where} ({path}): {exc.strerror or exc}; check the file and its "
            "permissions"
        ) from None


def _gpg_verdict(result: gnupg.Verify, expiry: str = "") -> Verdict:
    """What python-gnupg's status lines say, most serious first."""
    statuses = {str(p.get("status")) for p in result.problems}
    fingerprint = result.pubkey_fingerprint or result.fingerprint or result.key_id or ""
    signer = f"key 0x{fingerprint}" if fingerprint else "an unknown key"
    if result.username:
        signer += f" ({result.username})"
    detail = str(result.key_status or result.status or "")
    if "signature bad" in statuses:
        return Verdict(Reason.BAD_SIGNATURE, signer, "BADSIG: the signed payload differs")
    if "no public key" in statuses:
        return Verdict(Reason.UNKNOWN_KEY, signer, "no public key for it among the trusted keys")
    if result.key_status == "signing key was revoked":
        return Verdict(Reason.REVOKED_KEY, signer, detail)
    if result.key_status == "signing key has expired":
        expired = _gpg_date(expiry)
        return Verdict(Reason.EXPIRED_KEY, signer, f"expired {expired}" if expired else detail)
    if "signature expired" in statuses:
        return Verdict(Reason.EXPIRED_KEY, signer, "the signature itself has expired")
    if result.valid and result.fingerprint:
        return Verdict(Reason.VERIFIED, signer)
    return Verdict(Reason.BAD_SIGNATURE, signer, detail or "gpg could not verify it")


def _gpg_date(timestamp: str | None) -> str:
    if not timestamp or not timestamp.isdigit() or timestamp == "0":
        return ""
    at = datetime.datetime.fromtimestamp(int(timestamp), tz=datetime.UTC)
    return f"on {at:%Y-%m-%d %H:%M} UTC"


def _said(proc: subprocess.CompletedProcess[bytes]) -> str:
    """ssh-keygen's explanation, on one line."""
    text = (proc.stderr or proc.stdout).decode("utf-8", "replace").strip()
    return "; ".join(line.strip() for line in text.splitlines() if line.strip()) or (
        f"ssh-keygen exited with status {proc.returncode}"
    )


def _ssh_signer(signature: bytes) -> tuple[str, str]:
    """(``SHA256:`` fingerprint of the signing key, namespace) from an armored SSHSIG blob.

    ("", "") when the blob cannot be read. Only for naming the signer: ssh-keygen
    does the verification.
    """
    lines = signature.strip().splitlines()
    if len(lines) < 3 or lines[0] != _SSH_BEGIN:
        return "", ""
    try:
        blob = base64.b64decode(b"".join(lines[1:-1]), validate=True)
        if blob[:6] != b"SSHSIG":
            return "", ""
        at = 10  # magic and version
        public_key, at = _ssh_string(blob, at)
        namespace, at = _ssh_string(blob, at)
    except (binascii.Error, ValueError, struct.error):
        return "", ""
    digest = base64.b64encode(hashlib.sha256(public_key).digest()).decode().rstrip("=")
    return f"SHA256:{digest}", namespace.decode("utf-8", "replace")


def _ssh_string(blob: bytes, at: int) -> tuple[bytes, int]:
    (size,) = struct.unpack_from(">I", blob, at)
    end = at + 4 + size
    if end > len(blob):
        raise ValueError("truncated SSH signature")
    return blob[at + 4 : end], end
