"""Side-by-side timing: interleaved repetitions, min and median, and their ratios.

The machine is noisy (2 shared cores), so each figure is measured against its
baseline in the same run, alternating the two, and reported as the ratio of the
minimums and of the medians.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Samples:
    """Wall times (seconds) of repeated runs of one thing."""

    values: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.values.append(seconds)

    @property
    def min(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {
            "min": round(self.min, 4),
            "median": round(self.median, 4),
            "n": len(self.values),
            "values": [round(v, 4) for v in self.values],
        }


def ratio(a: float, b: float) -> float:
    """a / b, NaN when b is zero or unknown."""
    if not b or b != b:
        return float("nan")
    return round(a / b, 3)


def compare(subject: Samples, baseline: Samples) -> dict[str, Any]:
    """Both sample sets and the ratios subject/baseline of their min and median."""
    return {
        "subject": subject.to_json(),
        "baseline": baseline.to_json(),
        "ratio_min": ratio(subject.min, baseline.min),
        "ratio_median": ratio(subject.median, baseline.median),
    }


def interleave(
    repeat: int, subject: Callable[[], float], baseline: Callable[[], float]
) -> tuple[Samples, Samples]:
    """Run subject and baseline alternately ``repeat`` times (swapping who goes first)."""
    a, b = Samples(), Samples()
    for i in range(repeat):
        if i % 2 == 0:
            a.add(subject())
            b.add(baseline())
        else:
            b.add(baseline())
            a.add(subject())
    return a, b


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn()`` took."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started
