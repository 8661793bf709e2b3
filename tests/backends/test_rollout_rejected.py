"""A deployment rolled back because someone rejected it at a PAUSE hook says so.

``gitopsd approve APP --reject`` answers the hook with ContinueServiceDeployment
ROLLBACK; ECS reports the PAUSE hook FAILED and rolls back. The verdict read
"lifecycle hook PAUSE <id> FAILED at <stage>", as if a check had broken, instead of
naming the rejection.
"""

from __future__ import annotations

from .test_rollout_lifecycle import OLD, pause, sd, service, watcher


def test_a_rejected_pause_is_named_as_a_rejected_approval() -> None:
    w = watcher([])
    w.observe(service(), sd("IN_PROGRESS", "POST_TEST_TRAFFIC_SHIFT", hooks=[pause()]))
    reason = (
        "Rolled back by ContinueServiceDeployment (action ROLLBACK) on lifecycle hook hook-1 "
        "at POST_TEST_TRAFFIC_SHIFT."
    )
    verdict = w.observe(
        service(OLD),
        sd(
            "ROLLBACK_SUCCESSFUL",
            "POST_TEST_TRAFFIC_SHIFT",
            prod=0,
            hooks=[pause("FAILED")],
            statusReason=reason,
        ),
    )
    assert verdict is not None
    assert verdict.state == "ROLLED_BACK"
    assert "approval rejected at POST_TEST_TRAFFIC_SHIFT (PAUSE hook hook-1)" in verdict.message
    assert "FAILED at" not in verdict.message
