"""What the agent keeps in the store, against both stores: webhook deliveries and alert memory."""

from __future__ import annotations

from typing import Any

import pytest

from gitopsd.alerts import Alert, Channel, ChannelOptions
from gitopsd.events import ROLLOUT_FAILED, Event, Severity
from gitopsd.statestore import ALERTS, DELIVERIES, StateStore
from gitopsd.statestore.deliveries import DeliveryLog

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_delivery_id_counts_once_within_the_window_across_logs(store: StateStore) -> None:
    clock = Clock()
    first = DeliveryLog(store, retention=3600, clock=clock)
    assert await first.first_time("ci", "abc") is True
    assert await first.first_time("ci", "abc") is False
    assert await first.first_time("other-hook", "abc") is True
    restarted = DeliveryLog(store, retention=3600, clock=clock)  # a new process, same store
    assert await restarted.first_time("ci", "abc") is False
    clock.now += 3601
    assert await restarted.first_time("ci", "abc") is True  # past the window: news again


async def test_expired_delivery_ids_are_purged(store: StateStore) -> None:
    clock = Clock()
    log = DeliveryLog(store, retention=100, clock=clock)
    for i in range(3):
        assert await log.first_time("ci", f"old-{i}")
    clock.now += 101
    assert await log.first_time("ci", "new")
    assert set(await store.list(DELIVERIES)) == {"ci/new"}


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Alert] = []

    async def send(self, alert: Alert) -> None:
        self.sent.append(alert)


def failed(revision: str = "abc123") -> Event:
    return Event(ROLLOUT_FAILED, "web", revision, "web:2 failed", Severity.ERROR, "RolloutFailed")


async def deliver(channel: Channel, *events: Event) -> None:
    for e in events:
        channel.offer(e)
    channel.close()
    await channel.run()


async def test_a_restarted_channel_does_not_resend_an_open_problem(store: StateStore) -> None:
    clock = Clock()
    options = ChannelOptions(dedup_window=600)
    first = Recorder()
    await deliver(_channel(first, options, clock, store), failed())
    assert len(first.sent) == 1
    entry = await store.get(ALERTS, "hook")
    assert entry is not None
    assert entry.value["owed"] == ["web"]

    clock.now += 60  # a restart a minute later: same problem, same key
    again = Recorder()
    await deliver(_channel(again, options, clock, store), failed())
    assert again.sent == []

    clock.now += 600  # past the window: a reminder, counted as a repeat
    later = Recorder()
    await deliver(_channel(later, options, clock, store), failed())
    assert [a.repeat for a in later.sent] == [True]


def _channel(notifier: Any, options: ChannelOptions, clock: Clock, store: StateStore) -> Channel:
    channel = Channel("hook", notifier, options, clock=clock)
    channel.remember_in(store)
    return channel
