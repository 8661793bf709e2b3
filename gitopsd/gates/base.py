"""What a gate is and what one check of it says: the contract plugins implement.

A gate is any object with ``async def check(context: GateContext) -> GateResult``.
It answers ``GateResult(ok=False, ...)`` when what it measures is out of bounds
(one failed check; the runner counts them against ``failure_limit``), raises
:class:`~gitopsd.errors.TemporaryError` (or ``TimeoutError``/``OSError``) when it
could not tell this time (throttling, a timeout: not a failed check), and raises
:class:`~gitopsd.errors.PermanentError` when it never will (a bad query): that
fails the gate at once, with the error's message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class GateContext:
    """The rollout a check is about, in backend-neutral strings.

    ``phase`` is ``progressing`` or ``bake``; ``stage`` the platform's words for
    where the deployment is (ECS: ``IN_PROGRESS/PRODUCTION_TRAFFIC_SHIFT``);
    ``production_traffic`` the new revision's share of production traffic in
    percent ("" when unknown). ``started`` and ``now`` are epoch seconds.
    """

    app: str
    service: str
    deployment: str
    target: str
    phase: str
    stage: str = ""
    production_traffic: str = ""
    started: float = 0.0
    now: float = 0.0


@dataclass(frozen=True)
class GateResult:
    """One check: passed or failed, why (for people), and the values measured."""

    ok: bool
    message: str
    #: ``(label, value)`` per value measured (CloudWatch: per query returned).
    values: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class GateFailure:
    """A gate that failed: the rollout must be rolled back; ``message`` names the gate."""

    gate: str
    message: str


@runtime_checkable
class Gate(Protocol):
    """A check run while a deployment goes on; see the module docstring."""

    async def check(self, context: GateContext) -> GateResult: ...
