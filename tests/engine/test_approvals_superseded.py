"""A pause whose deployment a newer commit replaced is neither a timeout nor a decision.

A canary waits at a PAUSE hook; a newer commit supersedes the wait and its UpdateService
starts a new service deployment (ECS stops the paused one). The next rollout watch of the
same service reports the new deployment: the old hook must not be taken for one that
ECS timed out (a false "timed out" row in history when its timeout action is CONTINUE)
or for a decision made outside gitopsd.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gitopsd.engine.approvals import read_decisions
from gitopsd.events import APPROVAL_NEEDED, RolloutStage

from .test_approvals import (
    COMMIT,
    SD,
    FakeBackend,
    Sink,
    approvals,
    config,
    hook,
    resources,
    until,
    waiting,
)

pytestmark = pytest.mark.anyio

NEWER = "feed" * 10


@pytest.mark.parametrize("action", ["CONTINUE", "ROLLBACK"])
async def test_a_pause_superseded_by_a_newer_deployment_is_not_a_timeout(
    tmp_path: Path, action: str
) -> None:
    backend, sink = FakeBackend([hook("web", "h1", action=action)]), Sink()
    a = approvals(tmp_path, backend, sink)
    app = config().app("web")
    async with a.consulting(app, resources("web")):  # the canary's rollout watch
        a.observe(app, COMMIT, waiting("h1"))
        await until(lambda: a.pending["web"]["h1"].enriched)
    newer = replace(
        waiting("h1"),
        deployment=SD.replace("sd1", "sd2"),
        stage=RolloutStage("IN_PROGRESS", "RECONCILE_SERVICE"),
        details=(("hooks", ""),),
        message="",
    )
    with capture_logs() as logs:
        async with a.consulting(app, resources("web")):  # the newer commit's watch
            a.observe(app, NEWER, newer)
    told = [e["event"] for e in logs if str(e["event"]).startswith("approval.")]
    assert told == ["approval.superseded"]
    assert await read_decisions(a.store, "web") == []
    assert sink.kinds() == [APPROVAL_NEEDED]
    assert "h1" not in a.pending.get("web", {})
