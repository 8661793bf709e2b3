"""Random API faults on a fleet: converged, no duplicate revision, no false verdict.

Each kind arms seeded fault rules on the endpoint and syncs (in-process) until a run
exits 0, at most six runs: a run that gives up on lasting faults must fail cleanly, as
temporary. With the faults cleared, ``diff`` must exit 0, every family must have one
revision per distinct content committed, every service must run its family's newest
revision with its rollout COMPLETED, and no run may have said anything false (see
``false_verdicts``). Then a new image is committed for every family and all of it is
checked again under the same rules (UpdateService, registering after a first revision),
and a last sync must make no write at all.

The fleet has six families: every retried write spends one of gitopsd's own pacing
tokens (ten RegisterTaskDefinition at once, then one every two seconds), so with ten
families each retried registration would cost a two-second wait.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gitopsd.local_aws.testing import LocalAws

from .conftest import make_fleet
from .fleet import Fleet, Run, false_verdicts

WRITES = ["RegisterTaskDefinition", "CreateService", "UpdateService"]
FAMILIES = 6
MAX_RUNS = 6


@dataclass(frozen=True)
class Kind:
    name: str
    rules: tuple[dict[str, Any], ...]
    #: Config options (see ``fleet.config_text``).
    config: tuple[tuple[str, str], ...] = ()
    #: Whether the rules must have hit a write (else any call will do).
    on_writes: bool = True


KINDS = [
    Kind(
        "5xx-after-writes",
        ({"operation": WRITES, "error": "ServerException", "phase": "after", "rate": 0.3},),
    ),
    Kind(
        "drop-after-writes",
        ({"operation": WRITES, "error": "drop", "phase": "after", "rate": 0.3},),
    ),
    Kind("5xx-before-all", ({"operation": "*", "error": "ServerException", "rate": 0.3},)),
    Kind(
        "throttling-storm",
        ({"operation": "*", "error": "ThrottlingException", "rate": 0.6, "duration": 1.0},),
        on_writes=False,
    ),
    Kind(
        "latency",
        (
            {"operation": "DescribeServices", "error": None, "latency": 0.2, "rate": 0.5},
            {"operation": "RegisterTaskDefinition", "error": None, "latency": 0.5, "rate": 0.3},
        ),
        config=(("call_timeout", "5s"),),
        on_writes=False,
    ),
    Kind(
        # A write is made but its answer comes after the client's timeout.
        "timeout-after-writes",
        ({"operation": WRITES, "error": None, "latency": 1.0, "phase": "after", "rate": 0.15},),
        config=(("call_timeout", "0.6s"),),
    ),
]


@pytest.fixture
def api_fleet(tmp_path: Path, aws: LocalAws) -> Iterator[Fleet]:
    yield from make_fleet(tmp_path, aws, FAMILIES)


def arm(fleet: Fleet, kind: Kind, seed: int) -> list[dict[str, Any]]:
    """The kind's rules, seeded; each random rule (but a storm) also fires on its first call.

    The extra ``count: 1`` rule comes first, so whatever the seed, every rule is seen to
    fire at least once and no run tests nothing.
    """
    rules: list[dict[str, Any]] = []
    for i, rule in enumerate(kind.rules):
        if "duration" not in rule:
            once = {k: v for k, v in rule.items() if k != "rate"}
            rules.append(dict(once, count=1))
        rules.append(dict(rule, seed=seed + i))
    fleet.aws.inject_faults(rules)
    return rules


def injected(fleet: Fleet) -> Counter[str]:
    log = fleet.aws.faults()["injected"]
    return Counter(f"{i['operation']}:{i['error'] or 'latency'}" for i in log)


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_random_api_faults_converge_without_duplicates_or_false_verdicts(
    api_fleet: Fleet, kind: Kind, seed: int
) -> None:
    fleet = api_fleet
    fleet.configure(**dict(kind.config))
    base = seed + 1000 * KINDS.index(kind)
    print(f"fault kind {kind.name}: rule seeds from {base} (GITOPSD_FAULT_SEED={seed})")
    for round_, what in enumerate(("create everything", "a new image everywhere")):
        if round_:
            fleet.change(fleet.families, "new images")
        rules = arm(fleet, kind, base + 10 * round_)
        runs: list[Run] = fleet.sync_until_ok(MAX_RUNS)
        hits = injected(fleet)
        context = (
            f"[{kind.name}, GITOPSD_FAULT_SEED={seed}, {what}: rules {rules}; "
            f"injected {dict(hits)}]\n"
        )
        print(
            f"  {what}: {len(runs)} sync run(s), exit codes {[r.code for r in runs]}; "
            f"injected {dict(hits)}"
        )
        assert hits, context + "no fault fired: nothing was tested"
        if kind.on_writes:
            assert any(k.split(":")[0] in WRITES for k in hits), context + "no write faulted"
        fleet.check_converged(context=context)
        lies = false_verdicts(runs)
        assert not lies, context + "\n".join(lies + [r.show() for r in runs])
    fleet.check_no_writes(context=f"[{kind.name}, GITOPSD_FAULT_SEED={seed}]\n")


def test_a_write_whose_retries_all_time_out_fails_as_temporary(api_fleet: Fleet) -> None:
    """Every CreateService answer comes later than ``call_timeout``: once its retries are
    spent the sync must give up with a *temporary* error (a later pass may succeed).

    Found by this suite: the applier used to abandon the write after ``call_timeout *
    max_attempts`` (less than the attempts plus the backoff waits between them) with a
    ``TimeoutError``, and reported it as permanent.
    """
    fleet = api_fleet
    fleet.configure(call_timeout="0.3s", max_attempts=4)
    fleet.aws.inject_faults(
        [{"operation": "CreateService", "latency": 1.0, "phase": "after", "count": None}]
    )
    run = fleet.gitopsd("sync")
    fleet.aws.clear_faults()
    assert run.code == 2, run.show()
    assert "error (ApplyFailed, temporary): Service/fleet-00" in run.out, run.show()
    assert "ALERT app fleet: ApplyFailed" in run.err, run.show()
    fleet.sync_until_ok(2)
    fleet.check_converged()
