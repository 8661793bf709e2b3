"""Alert hygiene, routing and retried delivery (gitopsd.alerts), on explicit time."""

from __future__ import annotations

import anyio
import pytest

from gitopsd.alerts import (
    Alert,
    AlertFilter,
    Channel,
    PermanentDeliveryError,
    Route,
    parse_channel_options,
)
from gitopsd.events import (
    CHANGES_APPLIED,
    DRIFT_DETECTED,
    ERROR,
    RECONCILE_FINISHED,
    RECOVERED,
    ROLLED_BACK,
    Event,
    Severity,
)

COMMIT = "c" * 40
OTHER = "d" * 40


def ev(
    kind: str = ROLLED_BACK,
    app: str = "web",
    *,
    revision: str = COMMIT,
    severity: Severity = Severity.ERROR,
    reason: str = "RolledBack",
    message: str = "Service/web: ROLLED_BACK: 3 tasks failed in 12.3s (task 8f3a)",
    at: float = 0.0,
) -> Event:
    return Event(kind, app, revision, message, severity, reason, at)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_identical_problem_within_the_window_is_suppressed_and_counted() -> None:
    clock = Clock()
    f = AlertFilter(window=600, clock=clock)
    first = f.admit(ev(at=1.0))
    assert first is not None
    assert first.suppressed == 0
    f.sent(first)
    # Volatile parts differ (message with durations and task ids, time): still the same alert.
    for i in range(3):
        clock.now += 60
        assert f.admit(ev(message=f"took {i}.5s (task {i})", at=clock.now)) is None
    clock.now += 600
    again = f.admit(ev())
    assert again is not None
    assert (again.suppressed, again.repeat) == (3, True)
    assert "3 identical alert(s) suppressed" in again.text


def test_a_different_reason_or_revision_is_news() -> None:
    f = AlertFilter(window=600, clock=Clock())
    a = f.admit(ev())
    assert a is not None
    f.sent(a)
    assert f.admit(ev(revision=OTHER)) is not None
    assert f.admit(ev(kind=ERROR, reason="ApplyFailed")) is not None


def test_recovery_is_sent_once_and_only_where_a_problem_was_sent() -> None:
    f = AlertFilter(window=600, clock=Clock())
    recovered = ev(RECOVERED, severity=Severity.INFO, reason="Recovered", message="web is Ready")
    assert f.admit(recovered) is None  # nothing was alerted: no recovery owed
    problem = f.admit(ev())
    assert problem is not None
    f.sent(problem)
    rec = f.admit(recovered)
    assert rec is not None
    assert rec.title == f"web is Ready again at {COMMIT[:12]}"
    f.sent(rec)
    assert f.admit(recovered) is None  # once
    # After a recovery the same failure is news again, not a suppressed repeat.
    assert f.admit(ev()) is not None


def test_a_failed_delivery_is_not_recorded_as_sent() -> None:
    f = AlertFilter(window=600, clock=Clock())
    first = f.admit(ev())
    assert first is not None
    # not f.sent(first): the delivery failed
    assert f.admit(ev()) is not None


def test_route_severity_apps_and_kinds() -> None:
    route = Route(min_severity=Severity.WARNING, apps=("web*",), exclude_apps=("web-canary",))
    assert route.wants(ev())
    assert not route.wants(ev(CHANGES_APPLIED, severity=Severity.INFO, reason="ChangesApplied"))
    assert not route.wants(ev(app="api"))
    assert not route.wants(ev(app="web-canary"))
    # Recoveries pass the severity bar; bookkeeping kinds are left out by default.
    assert route.wants(ev(RECOVERED, severity=Severity.INFO))
    assert not Route().wants(ev(RECONCILE_FINISHED, severity=Severity.INFO))
    assert Route(kinds=("drift_*",)).wants(ev(DRIFT_DETECTED, severity=Severity.WARNING))
    assert not Route(exclude_kinds=("rolled_back",)).wants(ev())


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"min_severity": "loud"}, "min_severity"),
        ({"kinds": ["deploy"]}, "kinds"),
        ({"apps": "web"}, None),  # a single name is fine
        ({"apps": [1]}, "apps"),
        ({"retries": -1}, "retries"),
        ({"dedup_window": "soon"}, "dedup_window"),
        ({"queue": 0}, "queue"),
    ],
)
def test_channel_options_errors_name_the_key(options: dict[str, object], key: str | None) -> None:
    if key is None:
        parsed, _own = parse_channel_options(options)
        assert parsed.route.apps == ("web",)
        return
    with pytest.raises(ValueError, match=rf"^{key}: "):
        parse_channel_options(options)


def test_plugin_options_are_split_from_channel_options() -> None:
    parsed, own = parse_channel_options(
        {"enabled": True, "url_env": "HOOK", "min_severity": "error", "dedup_window": "5m"}
    )
    assert own == {"url_env": "HOOK"}
    assert parsed.route.min_severity is Severity.ERROR
    assert parsed.dedup_window == 300


class Flaky:
    """A notifier that fails its first ``failures`` sends (a down endpoint coming back)."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.attempts = 0
        self.sent: list[Alert] = []

    async def send(self, alert: Alert) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error("endpoint down")
        self.sent.append(alert)


def fast(**extra: object) -> dict[str, object]:
    return {"retry_backoff_min": "1ms", "retry_backoff_max": "2ms", **extra}


def run_channel(channel: Channel, events: list[Event]) -> None:
    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(channel.run)
            for e in events:
                channel.offer(e)
            channel.close()

    anyio.run(main)


def test_channel_retries_a_failed_send_then_records_it() -> None:
    notifier = Flaky(failures=2)
    options, _ = parse_channel_options(fast(retries=3))
    channel = Channel("hook", notifier, options)
    run_channel(channel, [ev(), ev()])
    assert notifier.attempts == 3
    assert len(notifier.sent) == 1
    assert channel.results == {"sent": 1, "suppressed": 1}


def test_channel_gives_up_after_its_retries_and_tries_again_on_the_next_event() -> None:
    notifier = Flaky(failures=3)
    options, _ = parse_channel_options(fast(retries=1))
    channel = Channel("hook", notifier, options)
    run_channel(channel, [ev(), ev()])
    # 2 attempts fail for the first event; it is not recorded as sent, so the second
    # identical event is delivered (attempt 3 fails, attempt 4 succeeds).
    assert notifier.attempts == 4
    assert len(notifier.sent) == 1
    assert channel.results == {"failed": 1, "sent": 1}


def test_a_permanent_refusal_is_not_retried() -> None:
    notifier = Flaky(failures=5, error=PermanentDeliveryError)
    options, _ = parse_channel_options(fast(retries=4))
    channel = Channel("hook", notifier, options)
    run_channel(channel, [ev()])
    assert notifier.attempts == 1
    assert channel.results == {"failed": 1}


def test_a_hanging_send_is_timed_out_per_attempt() -> None:
    class Hangs:
        attempts = 0

        async def send(self, alert: Alert) -> None:
            self.attempts += 1
            await anyio.sleep_forever()

    notifier = Hangs()
    options, _ = parse_channel_options(fast(retries=1, timeout="20ms"))
    channel = Channel("hook", notifier, options)
    run_channel(channel, [ev()])
    assert notifier.attempts == 2
    assert channel.results == {"failed": 1}


def test_a_full_queue_drops_the_oldest_and_counts_it() -> None:
    notifier = Flaky(failures=0)
    options, _ = parse_channel_options({"queue": 2, "dedup_window": 0})
    channel = Channel("hook", notifier, options)
    for reason in ("A", "B", "C"):
        channel.offer(ev(reason=reason))
    channel.close()
    anyio.run(channel.run)
    assert [a.event.reason for a in notifier.sent] == ["B", "C"]
    assert channel.results == {"dropped": 1, "sent": 2}
