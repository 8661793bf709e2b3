"""P1, the no-op reconcile: AWS calls against the floor, wall time against the floor script.

With every service in sync, two ways of looking:

* **daemon pass**: gitopsd's engine held in one process (:mod:`bench.driver`),
  a steady-state pass after a first one, against :mod:`bench.floor` in its own
  process doing its floor pass after a first one (both with warm clients);
* **one-shot** ``gitopsd diff``: the whole command (start-up, fetch, render,
  plan), after a first ``diff`` (so a persisted cache may be used), against the
  floor script's whole process (interpreter, aiobotocore import, one pass).

The two are run alternately ``repeat`` times; calls are read from the endpoint's
call log. The floor is :func:`bench.floor.floor_calls`; "extra calls" is the
share above it. Goals (issue 10): calls at most floor + 5 %, zero writes; daemon
pass at most 1.2x the floor script, one-shot diff at most 1.5x.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from bench.floor import floor_calls
from bench.seed import Deployed, run_json
from bench.servers import ROOT
from bench.stats import Samples, compare

READS = ("Describe", "List", "Get")


def _calls_summary(calls: dict[str, int], floor: dict[str, int]) -> dict[str, Any]:
    total = sum(calls.values())
    floor_total = sum(floor.values())
    writes = sum(n for op, n in calls.items() if not op.startswith(READS))
    return {
        "by_operation": dict(sorted(calls.items())),
        "floor": floor,
        "total": total,
        "floor_total": floor_total,
        "ratio": round(total / floor_total, 3) if floor_total else None,
        "writes": writes,
    }


def daemon_pass(dep: Deployed, repeat: int, passes: int = 2) -> dict[str, Any]:
    """Steady-state passes in-process, gitopsd vs the floor script, alternated."""
    env = dep.env()
    endpoint = dep.aws.endpoint_url
    floor = floor_calls(json.loads(dep.fleet_json.read_text()))
    ours, base = Samples(), Samples()
    first_calls: dict[str, int] = {}
    steady_calls: dict[str, int] = {}
    for i in range(repeat):
        order = [0, 1] if i % 2 == 0 else [1, 0]
        for who in order:
            if who == 0:
                out = run_json(
                    ["bench.driver", str(dep.config), endpoint, "--passes", str(passes + 1)], env
                )
                first_calls = out["passes"][0]["calls"]
                steady_calls = out["passes"][-1]["calls"]
                for p in out["passes"][1:]:
                    ours.add(p["seconds"])
            else:
                out = run_json(
                    [
                        "bench.floor",
                        str(dep.fleet_json),
                        endpoint,
                        "--passes",
                        str(passes + 1),
                    ],
                    env,
                )
                for p in out["passes"][1:]:
                    base.add(p["seconds"])
    return {
        "calls": _calls_summary(steady_calls, floor),
        "first_pass_calls": dict(sorted(first_calls.items())),
        "wall": compare(ours, base),
    }


def _timed_process(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    return time.perf_counter() - started, proc.returncode


def oneshot_diff(dep: Deployed, repeat: int) -> dict[str, Any]:
    """``gitopsd diff`` (whole process) vs the floor script (whole process), alternated."""
    env = dep.env()
    floor = floor_calls(json.loads(dep.fleet_json.read_text()))
    diff = [sys.executable, "-m", "gitopsd", "diff", "-c", str(dep.config), "--color", "never"]
    script = [sys.executable, "-m", "bench.floor", str(dep.fleet_json), dep.aws.endpoint_url]
    dep.aws.clear_calls()
    _, code = _timed_process(diff, env)  # the first diff: may fill a persisted cache
    cold = Counter(dep.aws.calls())
    if code != 0:
        raise RuntimeError(f"gitopsd diff of an in-sync fleet exited {code}")
    ours, base = Samples(), Samples()
    calls: Counter[str] = Counter()
    for i in range(repeat):
        order = [0, 1] if i % 2 == 0 else [1, 0]
        for who in order:
            if who == 0:
                dep.aws.clear_calls()
                seconds, code = _timed_process(diff, env)
                calls = Counter(dep.aws.calls())
                if code != 0:
                    raise RuntimeError(f"gitopsd diff of an in-sync fleet exited {code}")
                ours.add(seconds)
            else:
                seconds, code = _timed_process(script, env)
                if code != 0:
                    raise RuntimeError(f"the floor script exited {code}")
                base.add(seconds)
    return {
        "calls": _calls_summary(dict(calls), floor),
        "first_run_calls": dict(sorted(cold.items())),
        "wall": compare(ours, base),
    }


def measure(dep: Deployed, repeat: int) -> dict[str, Any]:
    """P1 for one deployed fleet."""
    return {
        "services": dep.fleet.services,
        "apps": len(dep.fleet.apps),
        "clusters": len(dep.fleet.clusters),
        "daemon": daemon_pass(dep, repeat),
        "oneshot": oneshot_diff(dep, repeat),
    }
