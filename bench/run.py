"""``make bench``: start the servers, run P1-P5 and the scaling row, print and save them.

``python -m bench.run [--quick] [--services N] [--only p1,p3,...]`` runs in a
temporary directory with the local ECS endpoint (``gitopsd local-aws``) and a
``git daemon`` on loopback, prints the table (:mod:`bench.report`) and writes
every figure to ``bench/results/latest.json``. A part that fails is recorded
with its error and the run goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import p1_noop, p2_rollout, p3_git, p4_latency, p5_memory, report
from bench.seed import deploy_fleet
from bench.servers import ROOT, GitDaemon, LocalAws

RESULTS = ROOT / "bench" / "results"
PARTS = ("p1", "scaling", "p2", "p3", "p4", "p5")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100 services, fewer repetitions")
    parser.add_argument("--services", type=int, help="fleet size for P1, P2, P4, P5")
    parser.add_argument("--repeat", type=int, help="repetitions of each side-by-side figure")
    parser.add_argument("--scaling", help="fleet sizes of the scaling row, e.g. 100,1000,10000")
    parser.add_argument("--memory", help="fleet sizes of P5, e.g. 1000,10000")
    parser.add_argument("--commits", type=int, help="commits of P3's repository")
    parser.add_argument("--only", help=f"comma-separated parts among {', '.join(PARTS)}")
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    quick = args.quick
    args.services = args.services or (100 if quick else 1000)
    args.repeat = args.repeat or (3 if quick else 5)
    args.scaling = [
        int(n) for n in (args.scaling or ("50,100,200" if quick else "100,1000,10000")).split(",")
    ]
    args.memory = [
        int(n) for n in (args.memory or ("100,200" if quick else "1000,10000")).split(",")
    ]
    args.commits = args.commits or (2000 if quick else 10000)
    args.commits_p4 = 5 if quick else 20
    args.only = set((args.only or ",".join(PARTS)).split(","))
    unknown = args.only - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose among {', '.join(PARTS)}")
    return args


def _guarded(results: dict[str, Any], name: str, fn: Callable[[], Any]) -> None:
    """Run one part; record its figures or its error; save what the run has so far."""
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as exc:
        traceback.print_exc()
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    print(f"bench: {name} done in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    save = results.get("_save")
    if callable(save):
        save()


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run(args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    results.update(
        {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "settings": {
                "services": args.services,
                "repeat": args.repeat,
                "scaling": args.scaling,
                "memory": args.memory,
                "commits": args.commits,
                "quick": args.quick,
            },
        }
    )
    with (
        tempfile.TemporaryDirectory(prefix="gitopsd-bench-") as tmp,
        LocalAws(pace=1000.0) as aws,
        GitDaemon(Path(tmp) / "served") as daemon,
    ):
        work = Path(tmp)
        if "p1" in args.only or "scaling" in args.only:

            def p1() -> dict[str, Any]:
                dep = deploy_fleet(work, args.services, aws, daemon, name="p1")
                out = p1_noop.measure(dep, args.repeat)
                out["seed_seconds"] = round(dep.seed_seconds, 1)
                return out

            if "p1" in args.only:
                _guarded(results, "p1", p1)
        if "p3" in args.only:
            _guarded(results, "p3", lambda: p3_git.measure(work, args.commits, args.repeat))
        if "p4" in args.only:
            _guarded(
                results,
                "p4",
                lambda: p4_latency.measure(work, args.services, aws, daemon, args.commits_p4),
            )
        if "p2" in args.only:
            changed = min(100, max(1, args.services // 5))
            _guarded(
                results,
                "p2",
                lambda: p2_rollout.measure(
                    work, args.services, changed, aws, daemon, max(1, args.repeat // 2)
                ),
            )
        if "p5" in args.only:
            _guarded(results, "p5", lambda: p5_memory.measure(work, args.memory, aws, daemon, 5))
        if "scaling" in args.only:

            def scaling() -> list[dict[str, Any]]:
                points = []
                for n in args.scaling:
                    dep = deploy_fleet(work, n, aws, daemon, name=f"scale-{n}")
                    point = p1_noop.daemon_pass(dep, max(2, args.repeat // 2))
                    point["services"] = n
                    point["seed_seconds"] = round(dep.seed_seconds, 1)
                    points.append(point)
                    print(f"bench: scaling {n} done", file=sys.stderr, flush=True)
                return points

            _guarded(results, "scaling", scaling)
    return results


def table(results: dict[str, Any]) -> str:
    rows: list[report.Row] = []
    errors = []
    for part, fn in (
        ("p1", report.p1_rows),
        ("scaling", report.scaling_rows),
        ("p2", report.p2_rows),
        ("p3", report.p3_rows),
        ("p4", report.p4_rows),
        ("p5", report.p5_rows),
    ):
        if part not in results:
            continue
        if isinstance(results[part], dict) and "error" in results[part]:
            errors.append(f"{part}: {results[part]['error']}")
            continue
        rows += fn(results[part])
    text = report.render(rows)
    return text + ("\n\nerrors:\n" + "\n".join(errors) if errors else "")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    partial: dict[str, Any] = {}

    def save() -> None:  # after each part: a long run that is stopped keeps what it measured
        done = {k: v for k, v in partial.items() if k != "_save"}
        done["table"] = table(done)
        args.json.write_text(json.dumps(done, indent=1) + "\n")

    partial["_save"] = save
    results = run(args, partial)
    results.pop("_save", None)
    results["table"] = table(results)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    settings = results["settings"]
    print(f"gitopsd bench {results['date']} ({os.cpu_count()} cpus) {settings}")
    print(results["table"])
    print(f"\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
