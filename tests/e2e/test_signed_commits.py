"""Signed commits end to end: `gitopsd sync` and the agent refuse what does not verify.

Real keys are made in the test (gpg, ssh-keygen), real commits are signed by git and
served by ``git daemon``; AWS is the local endpoint, observed through its call log.
A refused commit writes nothing: the last verified revision keeps running, and the
agent alerts once per app.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support.signing import GpgSigner, SshSigner, stop_signing, tamper

from . import test_agent_observability as observability
from .conftest import Env
from .test_agent import WEB_TD, AgentProcess, agent_config, completed, web_td


def with_verify(env: Env, verify: str) -> None:
    text = env.config.read_text()
    assert text.count('branch = "main"\n') == 1
    env.config.write_text(
        text.replace('branch = "main"\n', f'branch = "main"\nverify = {verify}\n')
    )


def test_sync_applies_a_gpg_signed_commit_and_refuses_unsigned_untrusted_and_tampered_ones(
    env: Env, tmp_path: Path
) -> None:
    alice = GpgSigner(tmp_path / "gpg-alice", "alice")
    mallory = GpgSigner(tmp_path / "gpg-mallory", "mallory")
    key = alice.write_public_key(tmp_path / "alice.asc")
    with_verify(env, f'{{ mode = "gpg", keys = ["{key}"] }}')

    # The repository's first commit is unsigned: nothing is written, validate refuses too.
    run = env.gitopsd("sync")
    assert run.code != 0
    assert re.search(
        r"SourceFailed.*commit [0-9a-f]{12} of refs/heads/main is not signed", run.out + run.err
    )
    assert env.writes() == []
    for command in ("validate", "diff"):
        refused = env.gitopsd(command)
        assert refused.code != 0, command
        assert "is not signed" in refused.out + refused.err, command

    alice.sign_commits(env.repo)
    env.commit("signed by alice")
    run = env.gitopsd("sync")
    assert run.code == 0, run.out + run.err
    assert web_td(env) == "web:1"
    writes = Counter(env.writes())
    assert writes

    # A commit by a key nobody trusts: refused, naming the signer; web:1 keeps running.
    mallory.sign_commits(env.repo)
    env.edit(WEB_TD, "nginx:1.27", "nginx:1.28")
    env.commit("web: nginx 1.28, signed by mallory")
    run = env.gitopsd("sync")
    assert run.code != 0
    assert "is signed by key 0x" in run.out + run.err
    assert mallory.fingerprint[-16:] in run.out + run.err
    assert "which is not trusted (sources[examples].verify.keys" in run.out + run.err
    assert Counter(env.writes()) == writes

    # Alice's commit with its message rewritten afterwards: the signature does not verify.
    alice.sign_commits(env.repo)
    env.commit("web: nginx 1.28, signed by alice")
    forged = tamper(env.repo, "web: nginx 1.28, reviewed")
    env.repo.push()
    run = env.gitopsd("sync")
    assert run.code != 0
    assert f"commit {forged[:12]} of refs/heads/main has a signature by key 0x" in run.out + run.err
    assert "does not verify" in run.out + run.err
    assert Counter(env.writes()) == writes
    assert web_td(env) == "web:1"


def test_the_agent_applies_ssh_signed_commits_and_stalls_on_an_unsigned_one_with_one_alert(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = SshSigner(tmp_path / "ssh", "alice@example.com")
    signers = tmp_path / "allowed_signers"
    signers.write_text(alice.allowed_signers_line())
    with_verify(env, f'{{ mode = "ssh", allowed_signers = "{signers}" }}')
    alice.sign_commits(env.repo)
    env.commit("signed by alice")

    monkeypatch.setenv("E2E_HOOK_SECRET", observability.HOOK_SECRET)
    hook = observability.HookServer()
    hook.thread.start()
    env.config.write_text(
        env.config.read_text()
        + f'\n[plugins.webhook]\nurl = "{hook.url}"\nsecret_env = "E2E_HOOK_SECRET"\n'
        + 'kinds = ["error"]\n'
    )
    agent_config(env, source_interval="0.3s")
    a = AgentProcess(env)
    try:
        a.started()
        a.wait_for("the signed commit applied", lambda: completed(env, "web", "web:1"), 40)
        writes = Counter(env.writes())

        stop_signing(env.repo)
        env.edit(WEB_TD, "nginx:1.27", "nginx:1.28")
        unsigned = env.commit("web: nginx 1.28, unsigned")

        def stalled() -> dict[str, Any] | None:
            ready = next(c for c in a.app("web")["conditions"] if c["type"] == "Ready")
            return ready if ready["reason"] == "SourceFailed" else None

        ready = a.wait_for("web stalled on the unsigned commit", stalled)
        assert f"commit {unsigned[:12]} of refs/heads/main is not signed" in ready["message"]

        def refusals() -> int:
            return sum(1 for x in a.lines() if x.get("event") == "source.signature_rejected")

        seen = a.wait_for("the refusal logged", refusals)
        a.wait_for("three more polls", lambda: refusals() >= seen + 3)

        def alerts(app: str) -> list[dict[str, Any]]:
            return [b for b in list(hook.bodies) if b["kind"] == "error" and b["app"] == app]

        a.wait_for("the alerts", lambda: alerts("web") and alerts("worker"))
        assert len(alerts("web")) == 1
        assert len(alerts("worker")) == 1
        assert "is not signed" in alerts("web")[0]["message"]
        assert alerts("web")[0]["revision"] == unsigned
        assert alerts("web")[0]["reason"] == "SourceFailed"
        assert Counter(env.writes()) == writes  # nothing written: web:1 keeps running
        assert completed(env, "web", "web:1")

        # The next signed commit is applied.
        alice.sign_commits(env.repo)
        env.commit("web: nginx 1.28, signed")
        a.wait_for("web:2 rolled out", lambda: completed(env, "web", "web:2"), 40)
    finally:
        a.stop()
        hook.server.shutdown()
        hook.server.server_close()
