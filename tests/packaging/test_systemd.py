"""The systemd units: ``systemd-analyze verify``, the offline security score, and their promises.

systemd does not run in the test setup (no PID 1 systemd), but ``systemd-analyze``
verifies unit files and scores their sandboxing offline; ``.ci/run`` installs it from
Debian when it is missing. ``verify`` needs the ``ExecStart=`` binary to exist, so it
checks copies whose ``/opt/gitopsd/bin/gitopsd`` is this virtualenv's ``gitopsd``.
What the units promise about gitopsd itself (the config path, the state directory,
the stop timeout against the grace period) is checked against the typed config.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gitopsd.config import DaemonConfig

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
SERVICES = ["gitopsd.service", "gitopsd-sync.service"]
INSTALLED = "/opt/gitopsd/bin/gitopsd"
MAX_EXPOSURE = 2.0


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """``{section: {key: [values in order]}}`` (keys may repeat in a unit file)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    """A systemd time span as used in these units (``90s``, ``15min``, ``1h``)."""
    units = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit or "s"]
    return total


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found:
        return found
    reason = (
        "systemd-analyze is not installed: `apt-get install systemd` "
        "(.ci/run installs it before `make test`)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def verifiable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Copies of the units whose ExecStart= is this virtualenv's gitopsd (verify runs it)."""
    gitopsd = Path(sys.executable).parent / "gitopsd"
    assert gitopsd.exists(), f"{gitopsd}: install gitopsd in the virtualenv (make bootstrap)"
    out = tmp_path_factory.mktemp("units")
    for unit in UNITS.iterdir():
        text = unit.read_text()
        assert INSTALLED in text or unit.suffix != ".service", unit
        (out / unit.name).write_text(text.replace(INSTALLED, str(gitopsd)))
    return out


def test_every_unit_passes_systemd_analyze_verify(systemd_analyze: str, verifiable: Path) -> None:
    units = sorted(str(p) for p in verifiable.iterdir())
    assert len(units) == 3, units
    run = subprocess.run(
        [systemd_analyze, "verify", "--man=no", *units],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # verify only warns about an unknown key or a bad value: any output is a finding.
    assert run.stdout + run.stderr == ""


@pytest.mark.parametrize("unit", SERVICES)
def test_the_offline_security_exposure_is_at_most_2(systemd_analyze: str, unit: str) -> None:
    run = subprocess.run(
        [systemd_analyze, "security", "--offline=true", "--no-pager", str(UNITS / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", run.stdout)
    assert found, run.stdout
    assert float(found.group(1)) <= MAX_EXPOSURE, run.stdout


def test_the_agent_unit_is_a_notify_service_with_a_watchdog_and_a_reload() -> None:
    service = parse_unit(UNITS / "gitopsd.service")["Service"]
    assert service["Type"] == ["notify"]
    assert service["ExecStart"] == [f"{INSTALLED} run --config /etc/gitopsd/gitopsd.toml"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert seconds(service["WatchdogSec"][0]) > 2  # pings at half of it, ticks every second
    assert service["Restart"] == ["on-failure"]
    # SIGTERM: applies get grace_period, then alerts being delivered as long again.
    grace = DaemonConfig().grace_period
    assert seconds(service["TimeoutStopSec"][0]) > 2 * grace
    assert parse_unit(UNITS / "gitopsd.service")["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.parametrize("unit", SERVICES)
def test_the_state_directory_is_gitopsds_default_state_dir(unit: str) -> None:
    service = parse_unit(UNITS / unit)["Service"]
    assert service["DynamicUser"] == ["yes"]
    assert service["User"] == ["gitopsd"]  # one dynamic user: both units own the state dir
    assert service["StateDirectory"] == ["gitopsd"]
    state_dir = DaemonConfig().state_dir
    assert state_dir == Path("/var/lib") / service["StateDirectory"][0]
    assert service["ProtectSystem"] == ["strict"]  # nothing else is writable
    assert service["CapabilityBoundingSet"] == [""]
    assert service["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]


def test_the_one_shot_alternative_runs_sync_and_excludes_the_agent() -> None:
    service = parse_unit(UNITS / "gitopsd-sync.service")["Service"]
    assert service["Type"] == ["oneshot"]
    assert service["ExecStart"][0].startswith(f"{INSTALLED} sync --config /etc/gitopsd/")
    timer = parse_unit(UNITS / "gitopsd-sync.timer")
    assert timer["Unit"]["Conflicts"] == ["gitopsd.service"]
    assert timer["Timer"]["OnUnitActiveSec"] == ["1min"]


def test_the_units_hardening_is_the_same() -> None:
    """The one-shot unit is sandboxed exactly as the agent (only the service kind differs)."""
    sandbox = re.compile(r"^(Protect|Private|Restrict|SystemCall|Capability|Ambient|Lock|Memory)")
    agent, sync = (
        {k: v for k, v in parse_unit(UNITS / u)["Service"].items() if sandbox.match(k)}
        for u in SERVICES
    )
    assert agent == sync
    assert len(agent) >= 20
