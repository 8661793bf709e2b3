"""The agent's status line for a watched blue/green-family rollout shows its step's message
(traffic split, bake time left, approval needed), and a ROLLING one its stage."""

from __future__ import annotations

from gitopsd.engine.status import TRUE, AppStatus
from gitopsd.events import RolloutProgress, RolloutStage


def test_the_status_shows_the_lifecycle_message_then_the_stage() -> None:
    status = AppStatus("web")
    status.set("Reconciling", TRUE, "Progressing")
    status.rollout(
        RolloutProgress(
            "Service/web",
            RolloutStage("IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT"),
            message="Service/web: web:7: LINEAR: PRODUCTION_TRAFFIC_SHIFT 30% production traffic",
            details=(("production_traffic", "30"),),
        )
    )
    status.rollout(RolloutProgress("Service/api", RolloutStage("IN_PROGRESS"), message="x"))
    assert status.progress == (
        "Service/api: IN_PROGRESS; "
        "Service/web: web:7: LINEAR: PRODUCTION_TRAFFIC_SHIFT 30% production traffic"
    )
    assert status.conditions["Reconciling"].message == f"verify: {status.progress}"
    assert status.rollouts["Service/web"] == "IN_PROGRESS/PRODUCTION_TRAFFIC_SHIFT"
    assert "_said" not in status.to_json()
    status.set("Reconciling", "False")
    assert status.progress == ""
