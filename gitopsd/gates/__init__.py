"""Metric gates (Flagger's analysis): checks gitopsd runs while a deployment goes on.

An app declares its gates in ``apps[].gates`` (:class:`gitopsd.config.GateConfig`).
Each gate is an object with ``async def check(context) -> GateResult``
(:class:`Gate`): the built-in ``cloudwatch`` type reads GetMetricData
(:mod:`gitopsd.gates.cloudwatch`); any other type comes from a plugin's
``gitopsd_gate(name, type, options)`` hook. :class:`GateRunner`
(:mod:`gitopsd.gates.runner`) runs the gates of one rollout at their intervals,
counts failed checks against each gate's ``failure_limit`` and tells the
backend when one fails, so the backend can roll the deployment back. Nothing
here knows ECS: the backend says which phase a deployment is in.
"""

from __future__ import annotations

from gitopsd.gates.base import Gate, GateContext, GateFailure, GateResult
from gitopsd.gates.runner import GatePlugins, GateRunner, build_gates

__all__ = [
    "Gate",
    "GateContext",
    "GateFailure",
    "GatePlugins",
    "GateResult",
    "GateRunner",
    "build_gates",
]
