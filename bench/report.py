"""The benchmark's table: one row per figure, its ratio and the goal from issue 10.

:func:`rows` flattens the results :mod:`bench.run` collected into ``(figure,
measured, baseline, ratio, goal, met)`` rows; :func:`render` lays them out as
the plain-text table ``make bench`` prints and bench/README.md records.
"""

from __future__ import annotations

from typing import Any

Row = tuple[str, str, str, str, str, str]
HEADER: Row = ("figure", "gitopsd", "baseline", "ratio min / median", "goal", "met")


def _s(seconds: float) -> str:
    return f"{seconds:.3f}s" if seconds < 10 else f"{seconds:.1f}s"


def _wall(name: str, cmp: dict[str, Any], goal: float | None, base_name: str) -> Row:
    ratio = f"{cmp['ratio_min']:.2f}x / {cmp['ratio_median']:.2f}x"
    met = "" if goal is None else ("yes" if cmp["ratio_median"] <= goal else "NO")
    return (
        name,
        _s(cmp["subject"]["median"]),
        f"{_s(cmp['baseline']['median'])} {base_name}",
        ratio,
        "" if goal is None else f"<= {goal}x",
        met,
    )


def _calls(name: str, calls: dict[str, Any]) -> Row:
    ops = ", ".join(f"{op} {n}" for op, n in calls["by_operation"].items())
    ok = calls["ratio"] is not None and calls["ratio"] <= 1.05 and calls["writes"] == 0
    return (
        name,
        f"{calls['total']} ({ops})",
        f"{calls['floor_total']} floor",
        f"{calls['ratio']}x",
        "<= 1.05x, 0 writes",
        "yes" if ok else "NO",
    )


def p1_rows(p1: dict[str, Any], label: str = "P1") -> list[Row]:
    n = p1["services"]
    return [
        _calls(f"{label} daemon pass calls ({n} svc)", p1["daemon"]["calls"]),
        _wall(f"{label} daemon pass wall ({n} svc)", p1["daemon"]["wall"], 1.2, "floor script"),
        _calls(f"{label} one-shot diff calls ({n} svc)", p1["oneshot"]["calls"]),
        _wall(f"{label} one-shot diff wall ({n} svc)", p1["oneshot"]["wall"], 1.5, "floor script"),
    ]


def p3_rows(p3: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    goals = {"noop_poll": 0.5, "one_commit_fetch": 0.75, "clone": 1.5}
    base = {"noop_poll": "ls-remote", "one_commit_fetch": "git fetch", "clone": "clone --bare"}
    for transport in ("git", "http"):
        if transport not in p3:
            continue
        for figure, goal in goals.items():
            cmp = p3[transport][figure]
            row = _wall(f"P3 {figure} {transport}", cmp, goal, base[figure])
            b = cmp["bytes"]
            out.append((*row[:2], f"{row[2]}; bytes {b['gitopsd']}/{b['git']}", *row[3:]))
    return out


def p2_rows(p2: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    n = p2["changed"]
    for key, label in (("no_wait", "updated"), ("completed", "COMPLETED")):
        if key not in p2:
            continue
        cmp = p2[key]
        speedup = cmp["speedup_median"]
        out.append(
            (
                f"P2 {n} of {p2['services']} svc until {label}",
                f"{_s(cmp['subject']['median'])} ({cmp['per_service_ms']['gitopsd']} ms/svc)",
                f"{_s(cmp['baseline']['median'])} ecs-deploy x{n}",
                f"{cmp['ratio_min']:.3f}x / {cmp['ratio_median']:.3f}x ({speedup}x faster)",
                "<= 0.05x (20x faster)",
                "yes" if cmp["ratio_median"] <= 0.05 else "NO",
            )
        )
    paced = p2["paced"]
    ratio = paced["ratio_median"]
    within_burst = not paced["floor_seconds"]
    if within_burst:
        met = "n/a (within the burst)"
    else:
        ok = ratio is not None and ratio <= 1.2 and not any(paced["throttled"])
        met = "yes" if ok else "NO"
    out.append(
        (
            f"P2 {n} svc, gitopsd pacing aws",
            f"{_s(paced['gitopsd']['median'])}, throttled {paced['throttled']}",
            f"{paced['floor_seconds']}s bucket floor",
            "-" if within_burst else f"{ratio}x",
            "<= 1.2x, 0 throttles",
            met,
        )
    )
    thr = p2["endpoint_throttling"]
    ours = thr["gitopsd"]
    theirs = thr["ecs_deploy"]
    floor = thr["floor_seconds"]
    out.append(
        (
            f"P2 {n} svc, endpoint throttles",
            f"{_s(ours['seconds'])}, {ours['throttled']} throttled",
            (
                f"ecs-deploy {_s(theirs['seconds'])}, {theirs['throttled']} throttled, "
                f"{theirs['failures']} failed"
                if theirs
                else "ecs-deploy not installed"
            ),
            f"{round(ours['seconds'] / floor, 3) if floor else '-'}x floor ({floor}s)",
            "<= 1.2x floor, no storm",
            "",
        )
    )
    return out


def p4_rows(p4: dict[str, Any]) -> list[Row]:
    lat = p4["latency"]
    return [
        (
            f"P4 webhook -> UpdateService ({p4['services']} svc, {p4['commits']} commits)",
            f"p50 {lat['p50']}s, p95 {lat['p95']}s",
            f"{p4['api_writes']['p50']}s API time of the writes",
            "",
            f"p50 <= {p4['goal_p50']}s",
            "yes" if p4["met"] else "NO",
        )
    ]


def p5_rows(p5: list[dict[str, Any]]) -> list[Row]:
    out: list[Row] = []
    for point in p5:
        goal = point["goal_mb"]
        rss = [p["rss_mb"] for p in point["passes"]]
        ok = (goal is None or point["peak_mb"] <= goal) and point["growth_mb"] <= 5
        out.append(
            (
                f"P5 peak RSS, {point['services']} svc",
                f"{point['peak_mb']} MB; per pass {rss}",
                "",
                f"growth {point['growth_mb']} MB",
                f"<= {goal} MB, flat" if goal else "flat",
                "yes" if ok else "NO",
            )
        )
    return out


def scaling_rows(scaling: list[dict[str, Any]]) -> list[Row]:
    out: list[Row] = []
    for point in scaling:
        n = point["services"]
        calls = point["calls"]["total"] / n
        wall = point["wall"]["subject"]["median"] / n * 1000
        base = point["wall"]["baseline"]["median"] / n * 1000
        out.append(
            (
                f"scaling daemon pass {n} svc",
                f"{calls:.3f} calls, {wall:.2f} ms /svc",
                f"{base:.2f} ms /svc floor",
                f"{point['wall']['ratio_min']:.2f}x / {point['wall']['ratio_median']:.2f}x",
                "flat per svc",
                "",
            )
        )
    return out


def render(rows: list[Row]) -> str:
    table = [HEADER, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in table]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)
