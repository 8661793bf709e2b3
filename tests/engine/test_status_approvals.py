"""``gitopsd status -o json`` (and /api/v1/apps) carry each pending approval as fields.

A script or dashboard asking "what waits for an approval, until when?" had only the
human message ("approval needed: PAUSE hook ... expires ...") to parse. The agent's
app status now has ``approvals``: the resource, the hook, its stage and expiry.
"""

from __future__ import annotations

from gitopsd.engine.status import TRUE, AppStatus
from gitopsd.events import RolloutProgress, RolloutStage

NEEDED = (
    ("approval", "needed"),
    ("hook_expires", "2026-12-06T06:26:32Z"),
    ("hook_id", "h1"),
    ("hook_stage", "POST_TEST_TRAFFIC_SHIFT"),
    ("hooks", "PAUSE:AWAITING_ACTION"),
)


def test_pending_approvals_are_fields_until_the_hook_moves_on_or_the_pass_ends() -> None:
    status = AppStatus("api")
    status.set("Reconciling", TRUE, "Progressing")
    waiting = RolloutProgress(
        "Service/api",
        RolloutStage("IN_PROGRESS", "POST_TEST_TRAFFIC_SHIFT"),
        message="Service/api: api:2: approval needed: PAUSE hook h1 at POST_TEST_TRAFFIC_SHIFT",
        details=NEEDED,
    )
    status.rollout(waiting)
    assert status.to_json()["approvals"] == {
        "Service/api": {
            "hook_id": "h1",
            "stage": "POST_TEST_TRAFFIC_SHIFT",
            "expires": "2026-12-06T06:26:32Z",
        }
    }
    moved = RolloutProgress(
        "Service/api",
        RolloutStage("IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT"),
        message="Service/api: api:2: CANARY: PRODUCTION_TRAFFIC_SHIFT 10% production traffic",
        details=(("production_traffic", "10"),),
    )
    status.rollout(moved)
    assert status.to_json()["approvals"] == {}
    status.rollout(waiting)
    status.set("Reconciling", "False")
    assert status.to_json()["approvals"] == {}
