"""The agent's timing rules, on explicit times: no waiting."""

from __future__ import annotations

import random

from gitopsd.config import parse_config
from gitopsd.engine.schedule import Next, Scheduler, backoff, jittered

CONFIG = parse_config(
    {
        "daemon": {"interval": "60s", "jitter": 0.1, "backoff_min": "10s", "backoff_max": "5m"},
        "sources": [{"name": "s", "url": "/repo", "interval": "30s"}],
        "apps": [
            {"name": "a", "source": "s", "cluster": "c"},
            {"name": "b", "source": "s", "cluster": "c", "interval": "5m"},
        ],
    }
)


def test_jitter_only_stretches_and_stays_within_its_share() -> None:
    rng = random.Random(7)
    values = [jittered(60.0, 0.1, rng) for _ in range(1000)]
    assert min(values) >= 60.0
    assert max(values) <= 66.0
    assert len({round(v, 3) for v in values}) > 900  # spread: a fleet does not poll in step


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n, 10.0, 300.0) for n in range(0, 8)] == [0, 10, 20, 40, 80, 160, 300, 300]
    assert backoff(10_000, 10.0, 300.0) == 300.0


def test_success_requeues_after_the_apps_own_interval() -> None:
    sched = Scheduler(CONFIG, random.Random(1))
    a, b = CONFIG.apps
    d = sched.after(a, 1000.0, ok=True, temporary=False, failures=0)
    assert d.reason is Next.INTERVAL
    assert d.at is not None
    assert 1060.0 <= d.at <= 1066.0
    d = sched.after(b, 1000.0, ok=True, temporary=False, failures=0)
    assert d.at is not None
    assert 1300.0 <= d.at <= 1330.0


def test_a_temporary_failure_backs_off_and_a_permanent_one_stalls() -> None:
    sched = Scheduler(CONFIG, random.Random(1))
    a = CONFIG.apps[0]
    delays = []
    for failures in (1, 2, 3, 10):
        d = sched.after(a, 0.0, ok=False, temporary=True, failures=failures)
        assert d.reason is Next.BACKOFF
        assert d.at is not None
        delays.append(d.at)
    assert 10.0 <= delays[0] <= 11.0
    assert 20.0 <= delays[1] <= 22.0
    assert 40.0 <= delays[2] <= 44.0
    assert 300.0 <= delays[3] <= 330.0
    stalled = sched.after(a, 0.0, ok=False, temporary=False, failures=1)
    assert stalled == type(stalled)(Next.STALLED, None)


def test_sources_poll_on_their_own_interval() -> None:
    sched = Scheduler(CONFIG, random.Random(3))
    at = sched.next_poll("s", 100.0)
    assert 130.0 <= at <= 133.0
