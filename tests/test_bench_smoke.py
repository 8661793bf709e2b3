"""The benchmark harness (bench/) must not rot: generate a small fleet and measure P1.

``make bench`` takes many minutes, so the suite runs its generator and the P1
measurement at 20 services, once, against the real local endpoint and a real
``git daemon``, and checks the shape of the figures and that the AWS calls were
counted. It never asserts a time: on a shared machine only ratios measured side
by side mean anything, and those are the benchmark's job.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import p1_noop, report
from bench.fleet import plan_fleet, set_image_tag, write_manifests
from bench.seed import deploy_fleet
from bench.servers import GitDaemon, LocalAws


@pytest.fixture(scope="module")
def aws() -> Iterator[LocalAws]:
    with LocalAws(pace=1000.0) as server:
        yield server


def test_the_generator_spreads_services_over_apps_and_clusters(tmp_path: Path) -> None:
    fleet = plan_fleet(250, per_app=100, clusters=2)
    assert [len(names) for names in fleet.apps.values()] == [100, 100, 50]
    assert fleet.clusters == ["bench-0", "bench-1"]
    write_manifests(fleet, tmp_path)
    assert len(list(tmp_path.glob("apps/*/*.yaml"))) == 250
    set_image_tag(tmp_path, fleet, ["s00007"], "2.0")
    text = (tmp_path / fleet.path("s00007")).read_text()
    assert "busybox:2.0\n" in text
    assert "busybox:1.36" not in text


def test_p1_measures_calls_by_operation_against_the_floor(tmp_path: Path, aws: LocalAws) -> None:
    with GitDaemon(tmp_path / "served") as daemon:
        dep = deploy_fleet(tmp_path, 20, aws, daemon, per_app=10, clusters=2)
        result = p1_noop.measure(dep, repeat=1)

    assert (result["services"], result["apps"], result["clusters"]) == (20, 2, 2)
    for kind in ("daemon", "oneshot"):
        calls = result[kind]["calls"]
        assert calls["floor"] == {"DescribeServices": 2}
        assert calls["by_operation"]["DescribeServices"] >= 2
        assert calls["total"] == sum(calls["by_operation"].values())
        assert calls["writes"] == 0
        wall = result[kind]["wall"]
        assert set(wall) == {"subject", "baseline", "ratio_min", "ratio_median"}
        assert wall["subject"]["n"] >= 1
        assert wall["baseline"]["n"] >= 1
    rows = report.p1_rows(result)
    assert len(rows) == 4
    assert all(len(row) == len(report.HEADER) for row in rows)
