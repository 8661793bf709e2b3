"""The Slack notifier: its Block Kit message, received by a real local HTTP server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gitopsd_slack
import pytest
from gitopsd_slack import SlackNotifier

from gitopsd.alerts import Alert, PermanentDeliveryError
from gitopsd.events import RECOVERED, Change, FieldDiff, Severity
from gitopsd.redact import redact

from .support import COMMIT, DEPLOYMENT, LINK, Receiver, receiver, rollout_failed

pytestmark = pytest.mark.anyio


def texts(body: dict[str, Any]) -> list[str]:
    """Every mrkdwn/plain text of the blocks, in order."""
    out: list[str] = []
    for block in body["blocks"]:
        if "text" in block:
            out.append(block["text"]["text"])
        out += [f["text"] for f in block.get("fields", [])]
        out += [e["text"] for e in block.get("elements", [])]
    return out


def notifier(url_file: Path, server: Receiver, **options: Any) -> SlackNotifier:
    url_file.write_text(server.url + "\n")
    built = gitopsd_slack.gitopsd_notifier(
        name="slack", options={"url_file": str(url_file), **options}
    )
    return built


async def send(alert: Alert, tmp_path: Path, **options: Any) -> dict[str, Any]:
    async with receiver() as server:
        await notifier(tmp_path / "url", server, **options).send(alert)
        [request] = await server.wait_for(1)
    assert request.headers["content-type"] == "application/json"
    body: dict[str, Any] = json.loads(request.body)
    return body


async def test_message_has_what_people_need(tmp_path: Path) -> None:
    many = tuple(
        Change(f"service/s{i}", "update", (FieldDiff("/desiredCount", str(i), str(i + 1)),))
        for i in range(11)
    )
    event = rollout_failed(changes=rollout_failed().changes + many)
    alert = Alert(event, suppressed=3, repeat=True)
    body = await send(alert, tmp_path, channel="#deploys", username="gitopsd")

    assert body["text"] == alert.title
    assert (body["channel"], body["username"]) == ("#deploys", "gitopsd")
    header, facts, said, what, context = body["blocks"]
    assert [b["type"] for b in body["blocks"]] == ["section"] * 4 + ["context"]
    assert header["text"] == {"type": "mrkdwn", "text": f"*[ERROR] {alert.title}*"}
    fields = [f["text"] for f in facts["fields"]]
    message, changed = said["text"]["text"], what["text"]["text"]
    assert "*App*\nweb" in fields
    assert f"*Revision*\n<{LINK}|{COMMIT[:12]}>" in fields
    assert "*Commit*\nBump web to 1.2" in fields
    assert "*Stage*\nverify" in fields
    assert "*Reason*\nRolledBack" in fields
    assert message == event.message
    lines = changed.splitlines()
    assert lines[0] == "*What changed*"
    assert lines[1:4] == [
        'service/web: /taskDefinition: "web:1" → "web:2"',
        "service/web: /desiredCount: 2 → 3",
        "taskdefinition/web: create",
    ]
    assert len(lines) == 1 + 10 + 1
    assert lines[-1] == "and 4 more"
    assert "service/s6: /desiredCount: 6 → 7" in lines
    assert [e["text"] for e in context["elements"]] == [
        f"Deployment: `{DEPLOYMENT}`",
        "3 identical alert(s) suppressed since the last one",
    ]


async def test_user_text_is_escaped(tmp_path: Path) -> None:
    event = rollout_failed(
        commit_message="Fix <b> & 1 > 0",
        message="<!channel> see <https://evil.example|here> & more",
        reason="A<B",
        changes=(Change("service/<x>", "update", (FieldDiff("/a&b", "<1>", "&2"),)),),
    )
    body = await send(Alert(event), tmp_path)
    everything = "\n".join([body["text"], *texts(body)])
    assert "*Commit*\nFix &lt;b&gt; &amp; 1 &gt; 0" in everything
    assert "&lt;!channel&gt; see &lt;https://evil.example|here&gt; &amp; more" in everything
    assert "service/&lt;x&gt;: /a&amp;b: &lt;1&gt; → &amp;2" in everything
    assert "(A&lt;B)" in body["text"]
    # The only raw "<" left is the revision's own link.
    assert everything.count("<") == 1
    assert f"<{LINK}|" in everything


async def test_plain_revision_without_link_and_no_empty_fields(tmp_path: Path) -> None:
    event = rollout_failed(link="", commit_message="", stage="", deployment="", changes=())
    body = await send(Alert(event), tmp_path)
    fields = [f["text"] for f in body["blocks"][1]["fields"]]
    assert fields == ["*App*\nweb", f"*Revision*\n{COMMIT[:12]}", "*Reason*\nRolledBack"]
    assert not any(b["type"] == "context" for b in body["blocks"])
    assert "What changed" not in json.dumps(body)


async def test_recovery(tmp_path: Path) -> None:
    event = rollout_failed(
        kind=RECOVERED, severity=Severity.INFO, reason="", message="web is Ready", changes=()
    )
    body = await send(Alert(event), tmp_path)
    assert texts(body)[0] == f"*[RESOLVED] web is Ready again at {COMMIT[:12]}*"
    assert "web is Ready\n" not in "\n".join(texts(body)) + "\n"


async def test_url_env_is_a_secret_and_slack_4xx_is_permanent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with receiver(statuses=[404]) as server:
        url = server.url + "/T000/B000/slack-token-3c9d"
        monkeypatch.setenv("SLACK_URL", url)
        slack = gitopsd_slack.build({"url_env": "SLACK_URL"})
        with pytest.raises(PermanentDeliveryError, match="404") as caught:
            await slack.send(Alert(rollout_failed()))
    assert "slack-token-3c9d" not in str(caught.value)
    assert "slack-token-3c9d" not in redact(f"url={url}")
    assert "slack-token-3c9d" not in repr(slack)


def test_inline_url_is_refused() -> None:
    url = "https://hooks.slack.com/services/T000/B000/inline-token-77aa"
    with pytest.raises(ValueError, match=r"^url: ") as caught:
        gitopsd_slack.gitopsd_notifier(name="slack", options={"url": url})
    assert "url_env" in str(caught.value)
    assert "inline-token-77aa" not in str(caught.value)


def test_a_table_with_only_common_options_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"^url_env: required"):
        gitopsd_slack.gitopsd_notifier(name="slack", options={})


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"channel": "#a"}, "url_env"),
        ({"url_env": "GITOPSD_TEST_UNSET_VARIABLE"}, "url_env"),
        ({"url_env": ""}, "url_env"),
        ({"url_file": "/nonexistent/slack-url"}, "url_file"),
        ({"url_env": "SLACK_URL", "url_file": "/x"}, "url_env"),
        ({"url_env": "SLACK_URL", "channel": 5}, "channel"),
        ({"url_env": "SLACK_URL", "icon": ":x:"}, "icon"),
        ({"url_env": "SLACK_NOT_A_URL"}, "url_env"),
    ],
)
def test_bad_options_name_the_key(
    options: dict[str, Any], key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITOPSD_TEST_UNSET_VARIABLE", raising=False)
    monkeypatch.setenv("SLACK_URL", "https://hooks.slack.com/services/T/B/x-token-5555")
    monkeypatch.setenv("SLACK_NOT_A_URL", "not-a-url-secret-6666")
    with pytest.raises(ValueError, match=r"^[\w.]+: ") as caught:
        gitopsd_slack.gitopsd_notifier(name="slack", options=options)
    assert str(caught.value).startswith(f"{key}: ")
    assert "6666" not in str(caught.value)


def test_long_text_is_cut_within_slack_limits() -> None:
    event = rollout_failed(message="&" * 5000, commit_message="<" * 3000)
    body = gitopsd_slack.payload(Alert(event))
    for text in texts(body):
        assert len(text) <= 3000
        assert not text.rstrip("…").endswith(("&", "&a", "&am", "&amp", "&l", "&lt", "&g", "&gt"))
    for field in body["blocks"][1]["fields"]:
        assert len(field["text"]) <= 2000
