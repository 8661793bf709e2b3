"""The three first-party notifiers are found as any installed plugin is: by entry point."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import pytest
from gitopsd_slack import SlackNotifier
from gitopsd_sns import SnsNotifier
from gitopsd_webhook import WebhookNotifier

from gitopsd.events import Severity
from gitopsd.plugins import PLUGINS_GROUP, PluginConfigError, PluginRegistry, format_plugins

OURS = {"webhook": "gitopsd-webhook", "slack": "gitopsd-slack", "sns": "gitopsd-sns"}
TOPIC = "arn:aws:sns:us-east-1:123456789012:gitopsd-alerts"


def registry(options: dict[str, dict[str, Any]]) -> PluginRegistry:
    """Discovery with ``options``; plugins other than ours and the console are disabled."""
    others = {
        ep.name
        for ep in importlib.metadata.entry_points(group=PLUGINS_GROUP)
        if ep.name not in {*OURS, "console"}
    }
    return PluginRegistry.discover(options={**{n: {"enabled": False} for n in others}, **options})


def test_listed_with_their_distributions() -> None:
    infos = {p.name: p for p in registry({}).plugins()}
    for name, distribution in OURS.items():
        info = infos[name]
        assert info.distribution == distribution
        assert info.version == importlib.metadata.version(distribution)
        assert info.hooks == ("gitopsd_notifier",)
        assert info.enabled
    text = format_plugins(registry({}))
    for name, distribution in OURS.items():
        assert any(line.split()[:2] == [name, distribution] for line in text.splitlines())


def test_installed_but_not_configured_builds_no_channel() -> None:
    found = registry({})
    found.configure()  # no [plugins.NAME] table: inactive, not an error
    assert not {c.name for c in found.channels} & set(OURS)


def test_a_table_without_the_required_option_is_an_error() -> None:
    found = registry({"sns": {"min_severity": "error"}, "webhook": {"enabled": True}})
    with pytest.raises(PluginConfigError) as caught:
        found.configure()
    assert "plugins.sns.topic_arn: required" in str(caught.value)
    assert "plugins.webhook.url: required" in str(caught.value)


def test_channels_built_from_valid_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITOPSD_TEST_SLACK_URL", "https://hooks.slack.com/services/T/B/tok-4242")
    found = registry(
        {
            "webhook": {"url": "https://alerts.example.com/gitopsd", "timeout": "3s"},
            "slack": {"url_env": "GITOPSD_TEST_SLACK_URL", "min_severity": "error"},
            "sns": {"topic_arn": TOPIC, "kinds": ["rollout_failed", "recovered"]},
        }
    )
    found.configure()
    channels = {c.name: c for c in found.channels}
    assert set(OURS) <= set(channels)
    assert isinstance(channels["webhook"].notifier, WebhookNotifier)
    assert isinstance(channels["slack"].notifier, SlackNotifier)
    assert isinstance(channels["sns"].notifier, SnsNotifier)
    # The common keys went to the channel, not to the plugin.
    assert channels["webhook"].options.timeout == 3.0
    assert channels["slack"].options.route.min_severity is Severity.ERROR
    assert channels["sns"].options.route.kinds == ("rollout_failed", "recovered")
    for channel in found.channels:
        channel.close()


def test_disabled_is_listed_but_builds_nothing() -> None:
    found = registry({"webhook": {"enabled": False, "url": "https://a.example/"}})
    assert {p.name: p.enabled for p in found.plugins()}["webhook"] is False
    found.configure()
    assert "webhook" not in {c.name for c in found.channels}


def test_invalid_options_are_reported_with_their_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITOPSD_TEST_UNSET_VARIABLE", raising=False)
    found = registry(
        {
            "webhook": {"url": "not a url"},
            "slack": {"url": "https://hooks.slack.com/services/T/B/inline-9191"},
            "sns": {"topic_arn": TOPIC, "retries": -1},
        }
    )
    with pytest.raises(PluginConfigError) as caught:
        found.configure()
    message = str(caught.value)
    # Every plugin is asked before the error is raised.
    assert "plugins.webhook.url: must be an http:// or https:// URL" in message
    assert "plugins.slack.url: an inline webhook URL is refused" in message
    assert "url_env" in message
    assert "plugins.sns.retries:" in message
    assert "inline-9191" not in message
