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
