"""The "approval needed" notification says how to decide on exactly what it announces.

It used to say "`gitopsd approve APP` continues it": with two services of the app
paused at once, that command continues both, so approving from the second service's
notification also approved the first.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from .test_approvals import COMMIT, FakeBackend, Sink, approvals, config, waiting

pytestmark = pytest.mark.anyio


async def test_the_notification_names_the_service_to_approve(tmp_path: Path) -> None:
    sink = Sink()
    a = approvals(tmp_path, FakeBackend(), sink)
    app = config().app("web")
    a.observe(app, COMMIT, waiting("h1"))
    a.observe(app, COMMIT, replace(waiting("h2"), key="Service/worker"))
    web, worker = (e.message for e in sink.events)
    assert "`gitopsd approve web --service web` continues it" in web
    assert "`gitopsd approve web --service worker` continues it" in worker
    assert "`gitopsd approve web --service worker --reject` rolls it back" in worker
