"""Ctrl-C and SIGTERM during a sync: the exit status, a journal of exactly what was written.

``python -m gitopsd sync`` runs as a real subprocess on a change of all ten families
and gets the signal once the endpoint has received the first call of one stage (the
first registration, the first service update, the first rollout poll). Every write
the endpoint received must be in the journal the run prints, for the right resource
(a write in flight when the signal came is finished and listed); a rerun converges.
"""

from __future__ import annotations

import re
import signal
from collections import Counter

import pytest

from .fleet import READ_PREFIXES, Fleet, false_verdicts, label, wait_for

_WRITTEN = re.compile(r"^  written: (\w+)/(\S+): (.*)$", re.M)


@pytest.mark.parametrize(
    ("signum", "code", "when"),
    [
        (signal.SIGINT, 130, "RegisterTaskDefinition"),
        (signal.SIGTERM, 143, "UpdateService"),
        (signal.SIGINT, 130, "DescribeServiceDeployments"),
    ],
    ids=["SIGINT-at-first-register", "SIGTERM-at-first-update", "SIGINT-in-verify"],
)
def test_an_interrupted_sync_lists_every_write_and_a_rerun_converges(
    fleet: Fleet, signum: signal.Signals, code: int, when: str
) -> None:
    first = fleet.sync_until_ok(1)
    before = {f: set(fleet.revisions(f).contents) for f in fleet.families}
    running = {name: svc["taskDefinition"] for name, svc in fleet.services().items()}
    fleet.change(fleet.families, "new images")
    fleet.aws.clear_calls()

    proc = fleet.spawn("sync")
    wait_for(lambda: proc.poll() is not None or when in fleet.aws.calls(), 60, f"a {when} call")
    proc.signal(signum)
    run = proc.result(timeout=60)
    calls = fleet.aws.calls()
    context = f"[{signum.name} at the first {when}; calls {dict(Counter(calls))}]\n{run.show()}"
    assert run.code == code, context
    assert f"interrupted by {signum.name}:" in run.out, context
    journal = run.out.split(f"interrupted by {signum.name}:", 1)[1]
    assert re.search(
        r"^app fleet @ [0-9a-f]{12}: interrupted during (apply|verify)$", journal, re.M
    ), context

    written = _WRITTEN.findall(journal)
    print(f"{signum.name} at the first {when}: exit {run.code}; journal:{journal.rstrip()}")
    writes = [c for c in calls if not c.startswith(READ_PREFIXES)]
    # One journal line per write call (no faults: no retries); stage by stage.
    assert len(written) == len(writes), context
    assert Counter(k for k, _, _ in written) == Counter(
        "TaskDefinition" if op == "RegisterTaskDefinition" else "Service" for op in writes
    ), context
    # The right resources: what was registered and which services moved.
    registered = {
        label(arn) for f in fleet.families for arn in set(fleet.revisions(f).contents) - before[f]
    }
    journaled = {m.split()[-1] for k, _, m in written if k == "TaskDefinition"}
    assert journaled == registered, context
    assert all(m.startswith("registered ") for k, _, m in written if k == "TaskDefinition"), context
    moved = {
        name for name, svc in fleet.services().items() if svc["taskDefinition"] != running[name]
    }
    updated = {n for k, n, m in written if k == "Service" and m.startswith("updated")}
    assert moved == updated, context
    if when == "DescribeServiceDeployments":
        assert "rollouts were not verified" in journal, context
    else:
        assert "the rest of the plan was not applied" in journal or len(updated) == 10, context

    rerun = fleet.sync_until_ok(1)
    fleet.check_converged(context=context)
    lies = false_verdicts([*first, run, *rerun])
    assert not lies, context + "\n".join(lies)
