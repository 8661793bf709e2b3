"""SIGKILL a sync at seeded random points: the next run picks up, nothing is duplicated.

Each iteration commits new images for a seeded random subset of the ten families,
starts ``gitopsd sync`` in a process of its own (forked from the preloaded forkserver,
see ``faults.fleet``) and SIGKILLs it at a seeded point: once the endpoint has received
N calls, N write calls or N rollout polls, or N milliseconds after gitopsd started (in
the Git fetch or the render), unless it exits first: 26 runs, at least 20 of them
killed. After the 13th and the 26th a sync runs to completion: it must exit 0 (the
next run picks up whatever a killed one left), ``diff`` must exit 0, no family may
have a duplicate or an orphaned revision, every service must be steady on its family's
newest revision, the state records must be JSON objects, and a further sync must make
no write. No run, killed or not, may have said anything false.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitopsd.local_aws.testing import LocalAws

from .conftest import make_fleet
from .fleet import READ_PREFIXES, Fleet, ForkedProc, Run, false_verdicts, wait_for

ITERATIONS = 26  # a few runs finish before their kill point: at least 20 must be killed
CHECK_EVERY = 13
MAX_CALLS = 30  # a sync of the fleet makes about 20 to 60 calls


@dataclass(frozen=True)
class Trigger:
    """When to kill: after ``count`` calls, write calls or rollout polls, or ``delay`` seconds."""

    what: str  # "calls", "writes", "polls" or "delay"
    count: int = 0
    delay: float = 0.0

    @classmethod
    def draw(cls, rng: random.Random, changed: int) -> Trigger:
        roll = rng.random()
        if roll < 0.15:
            return cls("delay", delay=round(rng.uniform(0.0, 0.1), 3))
        if roll < 0.3:
            return cls("calls", rng.randint(1, MAX_CALLS))
        if roll < 0.45:
            return cls("polls", rng.randint(1, 2))
        return cls("writes", rng.randint(1, 2 * changed + 1))

    def reached(self, calls: list[str]) -> bool:
        if self.what == "calls":
            return len(calls) >= self.count
        if self.what == "polls":  # rollout polls: only verify asks for service deployments
            return calls.count("DescribeServiceDeployments") >= self.count
        return len([c for c in calls if not c.startswith(READ_PREFIXES)]) >= self.count

    def __str__(self) -> str:
        if self.what == "delay":
            return f"after {self.delay * 1000:.0f}ms"
        return f"at {self.count} {self.what}"


@dataclass
class KillPoint:
    iteration: int
    changed: int
    trigger: Trigger
    calls: list[str]  # what the endpoint had received when the process died
    code: int

    @property
    def killed(self) -> bool:
        return self.code == 128 + signal.SIGKILL

    def __str__(self) -> str:
        how = "SIGKILLed" if self.killed else f"exited {self.code}"
        writes = [c for c in self.calls if not c.startswith(READ_PREFIXES)]
        last = self.calls[-1] if self.calls else "-"
        return (
            f"#{self.iteration:02d} ({self.changed} families changed): kill {self.trigger}: "
            f"{how} after {len(self.calls)} calls, {len(writes)} writes (last {last})"
        )


@pytest.fixture
def crash_fleet(tmp_path: Path, aws: LocalAws) -> Iterator[Fleet]:
    yield from make_fleet(tmp_path, aws, 10)


def wait_for_trigger(aws: LocalAws, proc: ForkedProc, trigger: Trigger) -> None:
    """Return once ``trigger`` is reached or the process has exited."""
    if trigger.what == "delay":
        wait_for(lambda: proc.poll() is not None or proc.started(), 30, "gitopsd to start")
        deadline = time.monotonic() + trigger.delay
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        return
    wait_for(
        lambda: proc.poll() is not None or trigger.reached(aws.calls()),
        30,
        f"the kill point {trigger}",
        poll=0.01,
    )


def check_state_files(state: Path) -> list[str]:
    """Problems with the records under the state directory (each must be a JSON object)."""
    problems = []
    records = [*state.glob("apps/*/last-good.json"), *state.glob("apps/*/applied.json")]
    records += state.glob("git/*.fetched.json")
    assert records, f"no state records under {state}"
    for path in records:
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            problems.append(f"{path.relative_to(state)}: not JSON ({exc})")
            continue
        if not isinstance(data, dict):
            problems.append(f"{path.relative_to(state)}: not a JSON object")
    return problems


def converge(fleet: Fleet, context: str) -> Run:
    run = fleet.gitopsd("sync")
    assert run.code == 0, context + run.show()
    fleet.check_converged(exact=False, context=context)
    problems = check_state_files(fleet.state)
    assert not problems, context + "\n".join(problems)
    fleet.check_no_writes(context)
    return run


def test_sigkill_at_random_points_then_the_next_sync_converges(
    crash_fleet: Fleet, aws: LocalAws, seed: int
) -> None:
    fleet = crash_fleet
    rng = random.Random(seed)
    points: list[KillPoint] = []
    runs: list[Run] = []

    def context() -> str:
        return (
            f"[crash test, seed {seed} (GITOPSD_FAULT_SEED={seed} replays it); kill points:\n  "
            + "\n  ".join(str(p) for p in points)
            + "]\n"
        )

    for i in range(ITERATIONS):
        changed = fleet.families
        if i:
            changed = rng.sample(fleet.families, rng.randint(1, len(fleet.families)))
            fleet.change(sorted(changed), f"iteration {i}")
        trigger = Trigger.draw(rng, len(changed))
        aws.clear_calls()
        proc = fleet.fork("sync")
        wait_for_trigger(aws, proc, trigger)
        proc.signal(signal.SIGKILL)
        run = proc.result(timeout=30)
        runs.append(run)
        points.append(KillPoint(i, len(changed), trigger, aws.calls(), run.code))
        assert run.code in (0, 128 + signal.SIGKILL), context() + run.show()
        if (i + 1) % CHECK_EVERY == 0:
            runs.append(converge(fleet, context()))

    killed = [p for p in points if p.killed]
    print(f"seed {seed}: {len(killed)} of {len(points)} runs killed; kill points:")
    for p in points:
        print(f"  {p}")
    assert len(killed) >= 20, context() + "fewer than 20 kill points"
    lies = false_verdicts(runs)
    assert not lies, context() + "\n".join(lies)
