"""Run an app's gates for one rollout: at their intervals, counting failed checks.

:func:`build_gates` turns ``apps[].gates`` into gate objects once per app (the
built-in ``cloudwatch`` type, or whatever a plugin's ``gitopsd_gate`` hook
returns for another type: none is a configuration error). A
:class:`GateRunner` follows one rollout: each call of :meth:`GateRunner.run`
checks the gates that are due (``interval`` since their last check, and
``during`` the phase the backend reports), keeps each gate's last result for
the rollout's progress (``gate_<name>``) and returns a :class:`GateFailure`
once a gate has failed more than ``failure_limit`` checks, or a check raised a
permanent error. A temporary error (throttling, a timeout) is reported but not
counted. Time comes from an injectable clock, so tests drive it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from gitopsd.config import AppConfig, GateConfig
from gitopsd.errors import PermanentError, TemporaryError
from gitopsd.gates.base import Gate, GateContext, GateFailure, GateResult

log = structlog.get_logger(__name__)

#: ``(name, type, options) -> gate or None``: the plugins' ``gitopsd_gate`` hook.
GatePlugins = Callable[[str, str, Mapping[str, Any]], object | None]


def build_gates(
    app: AppConfig,
    *,
    cloudwatch: Callable[[GateConfig], Gate],
    plugins: GatePlugins | None = None,
) -> list[tuple[GateConfig, Gate]]:
    """The app's gates as objects; ``PermanentError`` naming the gate when a type is unknown."""
    out: list[tuple[GateConfig, Gate]] = []
    for i, config in enumerate(app.gates):
        where = f"app {app.name!r}: gates[{i}] ({config.name})"
        if config.type == "cloudwatch":
            out.append((config, cloudwatch(config)))
            continue
        gate = plugins(config.name, config.type, dict(config.options)) if plugins else None
        if gate is None:
            raise PermanentError(
                f"{where}: no plugin provides gate type {config.type!r} (install and enable "
                "the plugin that does, or fix apps[].gates[].type)"
            )
        if not isinstance(gate, Gate):
            raise PermanentError(
                f"{where}: the plugin's gitopsd_gate returned {type(gate).__name__}, "
                "which has no `async def check(context)`"
            )
        out.append((config, gate))
    return out


@dataclass(frozen=True)
class Check:
    """One check run: the gate, its result (None on a temporary error) and what to show."""

    gate: str
    result: GateResult | None
    summary: str


class GateRunner:
    """The gates of one rollout and their counts; see the module docstring."""

    def __init__(
        self,
        gates: Sequence[tuple[GateConfig, Gate]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gates = list(gates)
        self.clock = clock
        self.failures: Counter[str] = Counter()
        self._last: dict[str, float] = {}
        self._shown: dict[str, str] = {}
        #: Every check run so far, in order (for the rollout's span and tests).
        self.checks: list[Check] = []

    @classmethod
    def of(
        cls,
        gates: Sequence[tuple[GateConfig, Gate]],
        service: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> GateRunner | None:
        """The runner for ``service``'s rollout, or None when no gate watches it."""
        mine = [(c, g) for c, g in gates if c.services is None or service in c.services]
        return cls(mine, clock=clock) if mine else None

    def details(self) -> tuple[tuple[str, str], ...]:
        """``(gate_<name>, last result)`` for each gate checked so far."""
        return tuple(sorted((f"gate_{k}", v) for k, v in self._shown.items()))

    def never_checked(self) -> list[tuple[str, str]]:
        """``(gate, last error)`` for each gate that ran but never got a result: every check
        met a temporary error, so it guarded nothing."""
        answered = {c.gate for c in self.checks if c.result is not None}
        return [
            (name, self._shown[name].removeprefix("not checked (temporary: ").removesuffix(")"))
            for name in sorted({c.gate for c in self.checks} - answered)
            if self._shown.get(name, "").startswith("not checked")
        ]

    def next_due(self, phase: str) -> float | None:
        """When (clock) the next gate of ``phase`` is due; None when none runs in it."""
        times = [
            self._last.get(c.name, float("-inf")) + c.interval
            for c, _ in self.gates
            if phase in c.during
        ]
        return min(times) if times else None

    async def run(self, context: GateContext) -> GateFailure | None:
        """Check the gates due in ``context.phase``; the first gate that failed, if any."""
        for config, gate in self.gates:
            if context.phase not in config.during:
                continue
            now = self.clock()
            if now < self._last.get(config.name, float("-inf")) + config.interval:
                continue
            self._last[config.name] = now
            failure = await self._check(config, gate, context)
            if failure is not None:
                return failure
        return None

    async def _check(
        self, config: GateConfig, gate: Gate, context: GateContext
    ) -> GateFailure | None:
        name = config.name
        try:
            with anyio.fail_after(max(1.0, min(config.interval, 60.0))):
                result = await gate.check(context)
        except PermanentError as exc:
            return self._record(
                name, None, f"failed: {exc}", GateFailure(name, f"gate {name}: {exc}")
            )
        except Exception as exc:  # TemporaryError, TimeoutError, OSError, a plugin's bug
            if not isinstance(exc, TimeoutError | OSError) and not isinstance(exc, TemporaryError):
                log.exception("gate.check_raised", gate=name)
            self._record(name, None, f"not checked (temporary: {exc or type(exc).__name__})")
            return None
        if result.ok:
            self._record(name, result, f"ok: {result.message}")
            return None
        self.failures[name] += 1
        count = f"{self.failures[name]}/{config.failure_limit + 1}"
        summary = f"failed {count}: {result.message}"
        if self.failures[name] <= config.failure_limit:
            self._record(name, result, summary)
            return None
        message = (
            f"gate {name} failed {self.failures[name]} check(s) "
            f"(failure_limit {config.failure_limit}): {result.message}"
        )
        return self._record(name, result, summary, GateFailure(name, message))

    def _record(
        self, name: str, result: GateResult | None, summary: str, failure: GateFailure | None = None
    ) -> GateFailure | None:
        self._shown[name] = summary
        self.checks.append(Check(name, result, summary))
        log.info("gate.checked", gate=name, result=summary)
        return failure
