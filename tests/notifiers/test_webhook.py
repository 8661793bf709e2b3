"""The webhook notifier against a real local HTTP server, alone and through a Channel."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import anyio
import gitopsd_webhook
import pytest
from gitopsd_webhook import WebhookNotifier

from gitopsd.alerts import (
    Alert,
    Channel,
    DeliveryError,
    PermanentDeliveryError,
    parse_channel_options,
)
from gitopsd.redact import MASK, redact

from .support import COMMIT, LINK, free_port, receiver, rollout_failed

pytestmark = pytest.mark.anyio

SECRET = "webhook-hmac-secret-7f3a"
FAST = {"retry_backoff_min": "10ms", "retry_backoff_max": "20ms", "retries": 3, "timeout": "5s"}


def notifier(url: str, **options: Any) -> WebhookNotifier:
    built = gitopsd_webhook.gitopsd_notifier(name="webhook", options={"url": url, **options})
    return built


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does (GitHub's X-Hub-Signature-256 scheme)."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


async def test_post_is_signed_over_the_raw_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    alert = Alert(rollout_failed(), suppressed=2, repeat=True)
    async with receiver() as server:
        hook = notifier(server.url, secret_env="HOOK_SECRET", headers={"X-Team": "platform"})
        await hook.send(alert)
        [request] = await server.wait_for(1)

    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert verify(SECRET, request.body, request.headers["x-gitopsd-signature-256"])
    assert not verify("another-secret", request.body, request.headers["x-gitopsd-signature-256"])
    assert request.headers["x-gitopsd-event"] == "rollout_failed"
    assert request.headers["x-team"] == "platform"
    assert len(request.headers["x-gitopsd-delivery"]) == 64

    body = json.loads(request.body)
    assert body == alert.to_json()
    assert (body["app"], body["kind"], body["revision"]) == ("web", "rollout_failed", COMMIT)
    assert (body["link"], body["severity"], body["reason"]) == (LINK, "error", "RolledBack")
    assert (body["suppressed"], body["repeat"]) == (2, True)
    assert body["changes"][0] == {
        "key": "service/web",
        "action": "update",
        "fields": [
            {"path": "/taskDefinition", "before": '"web:1"', "after": '"web:2"'},
            {"path": "/desiredCount", "before": "2", "after": "3"},
        ],
    }
    assert redact(f"secret={SECRET}") == f"secret={MASK}"


async def test_unsigned_without_a_secret_and_delivery_id_is_stable() -> None:
    first, later = rollout_failed(), rollout_failed(at=1_700_000_100.0)
    async with receiver() as server:
        hook = notifier(server.url)
        for alert in (Alert(first), Alert(first, suppressed=1), Alert(later)):
            await hook.send(alert)
        requests = await server.wait_for(3)
    assert all("x-gitopsd-signature-256" not in r.headers for r in requests)
    ids = [r.headers["x-gitopsd-delivery"] for r in requests]
    assert ids[0] == ids[1] != ids[2]


async def test_secret_file_and_url_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "hmac"
    secret.write_text("file-secret-91c2\n")
    async with receiver() as server:
        url = server.url + "?token=webhook-url-token-5d1e"
        monkeypatch.setenv("HOOK_URL", url)
        hook = gitopsd_webhook.build({"url_env": "HOOK_URL", "secret_file": str(secret)})
        await hook.send(Alert(rollout_failed()))
        [request] = await server.wait_for(1)
    assert verify("file-secret-91c2", request.body, request.headers["x-gitopsd-signature-256"])
    assert url not in redact(f"posting to {url}")  # the URL from the environment is secret
    assert "webhook-url-token-5d1e" not in repr(hook)


async def test_channel_retries_5xx_then_counts_one_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    async with receiver(statuses=[500, 503]) as server:
        options, own = parse_channel_options(
            {"url": server.url, "secret_env": "HOOK_SECRET", **FAST}
        )
        channel = Channel("webhook", gitopsd_webhook.build(own), options)
        assert await channel.deliver(Alert(rollout_failed()))
        requests = await server.wait_for(3)
    assert channel.results == {"sent": 1}
    assert len(requests) == 3
    # Every attempt is the same delivery: same body, same id, a valid signature.
    assert len({r.body for r in requests}) == 1
    assert len({r.headers["x-gitopsd-delivery"] for r in requests}) == 1
    assert all(verify(SECRET, r.body, r.headers["x-gitopsd-signature-256"]) for r in requests)


async def test_channel_task_delivers_an_offered_event() -> None:
    async with receiver(statuses=[500]) as server:
        options, own = parse_channel_options({"url": server.url, **FAST})
        channel = Channel("webhook", gitopsd_webhook.build(own), options)
        async with anyio.create_task_group() as tg:
            tg.start_soon(channel.run)
            channel.offer(rollout_failed())
            deadline = time.monotonic() + 5
            while channel.results.get("sent", 0) < 1:
                assert time.monotonic() < deadline, channel.results
                await anyio.sleep(0.005)
            channel.close()
        assert len(server.requests) == 2
    assert channel.results == {"sent": 1}


async def test_channel_does_not_retry_4xx() -> None:
    async with receiver(statuses=[400, 400, 400]) as server:
        options, own = parse_channel_options({"url": server.url, **FAST})
        channel = Channel("webhook", gitopsd_webhook.build(own), options)
        assert not await channel.deliver(Alert(rollout_failed()))
        assert len(server.requests) == 1
        with pytest.raises(PermanentDeliveryError, match="400"):
            await gitopsd_webhook.build(own).send(Alert(rollout_failed()))
    assert channel.results == {"failed": 1}


async def test_unreachable_endpoint_is_a_retryable_delivery_error() -> None:
    hook = notifier(f"http://127.0.0.1:{free_port()}/hook")
    with pytest.raises(DeliveryError) as caught:
        await hook.send(Alert(rollout_failed()))
    assert not isinstance(caught.value, PermanentDeliveryError)


def test_a_table_with_only_common_options_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"^url: required"):
        gitopsd_webhook.gitopsd_notifier(name="webhook", options={})


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"secret_env": "X"}, "url"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "http:///nohost"}, "url"),
        ({"url": 3}, "url"),
        ({"url": "https://a.example/", "url_env": "HOOK_URL"}, "url"),
        ({"url_env": "GITOPSD_TEST_UNSET_VARIABLE"}, "url_env"),
        ({"url": "https://a.example/", "secret_env": "GITOPSD_TEST_UNSET_VARIABLE"}, "secret_env"),
        ({"url": "https://a.example/", "secret_file": "/nonexistent/secret"}, "secret_file"),
        ({"url": "https://a.example/", "secret_env": "A", "secret_file": "/b"}, "secret_env"),
        ({"url": "https://a.example/", "headers": "X-Team: a"}, "headers"),
        ({"url": "https://a.example/", "headers": {"Bad Name": "a"}}, "headers.Bad Name"),
        ({"url": "https://a.example/", "headers": {"X-Team": 1}}, "headers.X-Team"),
        ({"url": "https://a.example/", "headers": {"X-A": "a\r\nX-B: b"}}, "headers.X-A"),
        (
            {"url": "https://a.example/", "headers": {"x-gitopsd-signature-256": "forged"}},
            "headers.x-gitopsd-signature-256",
        ),
        ({"url": "https://a.example/", "tiemout": "5s"}, "tiemout"),
    ],
)
def test_bad_options_name_the_key(
    options: dict[str, Any], key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITOPSD_TEST_UNSET_VARIABLE", raising=False)
    with pytest.raises(ValueError, match=r"^[\w. -]+: ") as caught:
        gitopsd_webhook.gitopsd_notifier(name="webhook", options=options)
    assert str(caught.value).startswith(f"{key}: ")


def test_url_from_env_is_never_in_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_URL", "gopher://token-in-url-8a7b@example.com/")
    with pytest.raises(ValueError, match=r"^url_env: ") as caught:
        gitopsd_webhook.build({"url_env": "HOOK_URL"})
    assert "token-in-url-8a7b" not in str(caught.value)


def test_credential_like_headers_are_registered_as_secrets() -> None:
    gitopsd_webhook.build(
        {"url": "https://a.example/", "headers": {"Authorization": "Basic c2VjcmV0LWhkcg=="}}
    )
    assert "c2VjcmV0LWhkcg==" not in redact("header c2VjcmV0LWhkcg==")
