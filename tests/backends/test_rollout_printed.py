"""``gitopsd sync`` prints each step of a blue/green-family rollout once.

A gate's first result changes what the watcher reports (the gate states are part of
it), and the step's line was printed again, unchanged, right after the gate's own
line ("CANARY: RECONCILE_SERVICE" twice).
"""

from __future__ import annotations

import time

import anyio

from gitopsd.backends.ecs.rollout import RolloutWatcher, Target
from gitopsd.config import GateConfig
from gitopsd.gates import GateContext, GateResult, GateRunner

from .test_rollout_lifecycle import APP, OURS, SD, pause, sd, service


class Fine:
    async def check(self, context: GateContext) -> GateResult:
        return GateResult(True, "errors = 0")


def test_a_gate_result_does_not_print_the_step_again() -> None:
    printed: list[str] = []
    target = Target("svc", "Service/svc", OURS, "ecs-svc/2", SD, since=time.time())
    w = RolloutWatcher(APP, target, lambda key, line: printed.append(line), None)
    config = GateConfig.model_validate({"name": "errors", "type": "fine", "interval": "1s"})
    w.gates = GateRunner([(config, Fine())])
    w.observe(service(), sd("IN_PROGRESS", "PRE_SCALE_UP"))
    anyio.run(w.check_gates)
    w.observe(service(), sd("IN_PROGRESS", "PRE_SCALE_UP"))
    w.observe(service(), sd("IN_PROGRESS", "SCALE_UP"))
    steps = [line for line in printed if "LINEAR: " in line]
    assert steps == ["svc:2: LINEAR: PRE_SCALE_UP", "svc:2: LINEAR: SCALE_UP"], printed
    assert "gate errors: ok: errors = 0" in printed


def test_a_gate_result_is_printed_when_it_changes_not_at_every_check() -> None:
    """A gate checking every minute through a four-hour pause printed 240 identical
    "gate errors: ok: no data" lines."""
    printed: list[str] = []
    target = Target("svc", "Service/svc", OURS, "ecs-svc/2", SD, since=time.time())
    w = RolloutWatcher(APP, target, lambda key, line: printed.append(line), None)
    config = GateConfig.model_validate({"name": "errors", "type": "fine", "interval": "1s"})
    now = [0.0]
    w.gates = GateRunner([(config, Fine())], clock=lambda: now[0])
    w.observe(service(), sd("IN_PROGRESS", "POST_TEST_TRAFFIC_SHIFT"))
    for _ in range(3):
        anyio.run(w.check_gates)
        now[0] += 2.0
    assert len(w.gates.checks) == 3
    assert printed.count("gate errors: ok: errors = 0") == 1, printed


def test_a_step_waiting_for_approval_says_how_to_give_it() -> None:
    """``gitopsd rollback`` of a CANARY service with a PAUSE hook: the rollback's own
    deployment waits for an approval, and the command printed "approval needed: PAUSE
    hook ..." with nothing saying how to give it (no approval engine runs there)."""
    printed: list[str] = []
    target = Target("svc", "Service/svc", OURS, "ecs-svc/2", SD, since=time.time())
    w = RolloutWatcher(APP, target, lambda key, line: printed.append(line), None)
    w.observe(service(), sd("IN_PROGRESS", "POST_TEST_TRAFFIC_SHIFT", hooks=[pause()]))
    (line,) = [p for p in printed if "approval needed" in p]
    assert line.startswith("svc:2: approval needed: PAUSE hook hook-1 at POST_TEST_TRAFFIC_SHIFT")
    assert line.endswith(
        ": `gitopsd approve a --service svc` continues it, "
        "`gitopsd approve a --service svc --reject` rolls it back"
    )
