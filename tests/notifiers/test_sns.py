"""The SNS notifier against the local AWS endpoint: published, fanned out to SQS, classified."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import gitopsd_sns
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError
from gitopsd_sns import SnsNotifier

from gitopsd.alerts import (
    Alert,
    Channel,
    DeliveryError,
    PermanentDeliveryError,
    parse_channel_options,
)
from gitopsd.events import CHANGES_APPLIED, Severity
from gitopsd.local_aws.testing import LocalAws

from .support import free_port, rollout_failed

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("aws_env")]

FAST = {"retry_backoff_min": "10ms", "retry_backoff_max": "20ms", "retries": 3, "timeout": "10s"}
MISSING_TOPIC = "arn:aws:sns:us-east-1:123456789012:no-such-topic"


@asynccontextmanager
async def sns_notifier(local_aws: LocalAws, topic_arn: str) -> AsyncIterator[SnsNotifier]:
    built = gitopsd_sns.gitopsd_notifier(
        name="sns", options={"topic_arn": topic_arn, "endpoint_url": local_aws.endpoint_url}
    )
    try:
        yield built
    finally:
        await built.aclose()


_CLIENTS: dict[tuple[str, str], Any] = {}


def client(local_aws: LocalAws, service: str) -> Any:
    """A boto3 client of the endpoint, made once per session (making one takes a while)."""
    key = (local_aws.endpoint_url, service)
    if key not in _CLIENTS:
        _CLIENTS[key] = local_aws.boto3_client(service)
    return _CLIENTS[key]


def subscribed_queue(
    local_aws: LocalAws, topic_arn: str, name: str, **attributes: str
) -> tuple[Any, str]:
    """An SQS queue subscribed to the topic: (the sqs client, the queue URL)."""
    sqs, sns = client(local_aws, "sqs"), client(local_aws, "sns")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes=attributes)
    return sqs, str(url)


def receive(sqs: Any, url: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """At least ``count`` messages from the queue (polling, with a deadline)."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(messages) < count:
        assert time.monotonic() < deadline, f"{len(messages)} message(s) received, not {count}"
        answer = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        )
        messages += answer.get("Messages", [])
    return messages


def topic(local_aws: LocalAws, name: str = "gitopsd-alerts", **attributes: str) -> str:
    sns = client(local_aws, "sns")
    return str(sns.create_topic(Name=name, Attributes=attributes)["TopicArn"])


async def test_alert_reaches_an_sqs_subscriber(local_aws: LocalAws) -> None:
    arn = topic(local_aws)
    sqs, queue = subscribed_queue(local_aws, arn, "all")
    alert = Alert(rollout_failed(), suppressed=1, repeat=True)
    async with sns_notifier(local_aws, arn) as sns:
        await sns.send(alert)
    [message] = receive(sqs, queue, 1)
    envelope = json.loads(message["Body"])  # not raw: the SNS notification JSON
    assert envelope["TopicArn"] == arn
    assert envelope["Subject"] == alert.title
    assert json.loads(envelope["Message"]) == alert.to_json()
    assert envelope["MessageAttributes"] == {
        "app": {"Type": "String", "Value": "web"},
        "kind": {"Type": "String", "Value": "rollout_failed"},
        "severity": {"Type": "String", "Value": "error"},
    }
    assert local_aws.calls().count("Publish") == 1


async def test_subscribers_filter_on_the_attributes(local_aws: LocalAws) -> None:
    arn = topic(local_aws)
    raw = {"RawMessageDelivery": "true"}
    sqs, everything = subscribed_queue(local_aws, arn, "everything", **raw)
    _, errors = subscribed_queue(
        local_aws, arn, "errors", FilterPolicy=json.dumps({"severity": ["error"]}), **raw
    )
    info = rollout_failed(kind=CHANGES_APPLIED, severity=Severity.INFO, reason="")
    async with sns_notifier(local_aws, arn) as sns:
        await sns.send(Alert(info))
        await sns.send(Alert(rollout_failed()))
    both = receive(sqs, everything, 2)
    assert sorted(json.loads(m["Body"])["kind"] for m in both) == [
        "changes_applied",
        "rollout_failed",
    ]
    # The info alert went first: had the filter let it through, it would be here too.
    received = receive(sqs, errors, 1)
    assert [json.loads(m["Body"])["kind"] for m in received] == ["rollout_failed"]
    attributes = received[0]["MessageAttributes"]
    assert attributes["severity"] == {"StringValue": "error", "DataType": "String"}
    assert attributes["app"] == {"StringValue": "web", "DataType": "String"}


async def test_subject_is_one_line_within_the_sns_limit(local_aws: LocalAws) -> None:
    arn = topic(local_aws)
    sqs, queue = subscribed_queue(local_aws, arn, "q")
    alert = Alert(rollout_failed(reason="Very" * 40 + "\nLong"))
    async with sns_notifier(local_aws, arn) as sns:
        await sns.send(alert)
    [message] = receive(sqs, queue, 1)
    subject = json.loads(message["Body"])["Subject"]
    assert len(subject) <= 99
    assert "\n" not in subject
    assert subject.startswith("web: rollout failed at 0123456789ab (VeryVery")
    assert subject.endswith("...")


async def test_fifo_topic_gets_group_and_deduplication_ids(local_aws: LocalAws) -> None:
    arn = topic(local_aws, "gitopsd-alerts.fifo", FifoTopic="true")
    async with sns_notifier(local_aws, arn) as sns:
        await sns.send(Alert(rollout_failed()))
    assert local_aws.calls()[-1] == "Publish"
    args = gitopsd_sns.publish_args(arn, Alert(rollout_failed()))
    assert args["MessageGroupId"] == "web"
    assert args["MessageDeduplicationId"] == gitopsd_sns.delivery_id(Alert(rollout_failed()))


async def test_missing_topic_is_permanent(local_aws: LocalAws) -> None:
    async with sns_notifier(local_aws, MISSING_TOPIC) as sns:
        with pytest.raises(PermanentDeliveryError, match="NotFound"):
            await sns.send(Alert(rollout_failed()))


async def test_channel_does_not_retry_a_missing_topic(local_aws: LocalAws) -> None:
    options, own = parse_channel_options(
        {"topic_arn": MISSING_TOPIC, "endpoint_url": local_aws.endpoint_url, **FAST}
    )
    notifier = gitopsd_sns.build(own)
    channel = Channel("sns", notifier, options)
    try:
        assert not await channel.deliver(Alert(rollout_failed()))
    finally:
        await notifier.aclose()
    assert channel.results == {"failed": 1}
    assert local_aws.calls().count("Publish") == 1


async def test_channel_retries_a_dropped_connection(local_aws: LocalAws) -> None:
    arn = topic(local_aws)
    sqs, queue = subscribed_queue(local_aws, arn, "q")
    local_aws.arm_fault("Publish", "drop", count=1)  # the first Publish gets no answer
    options, own = parse_channel_options(
        {"topic_arn": arn, "endpoint_url": local_aws.endpoint_url, **FAST}
    )
    notifier = gitopsd_sns.build(own)
    channel = Channel("sns", notifier, options)
    try:
        assert await channel.deliver(Alert(rollout_failed()))
    finally:
        await notifier.aclose()
    assert channel.results == {"sent": 1}
    assert local_aws.calls().count("Publish") == 2
    assert len(receive(sqs, queue, 1)) == 1


async def test_unreachable_endpoint_is_retryable() -> None:
    notifier = gitopsd_sns.build(
        {
            "topic_arn": "arn:aws:sns:us-east-1:123456789012:t",
            "endpoint_url": f"http://127.0.0.1:{free_port()}",
        }
    )
    try:
        with pytest.raises(DeliveryError, match="could not reach SNS") as caught:
            await notifier.send(Alert(rollout_failed()))
    finally:
        await notifier.aclose()
    assert not isinstance(caught.value, PermanentDeliveryError)


async def test_client_is_lazy_and_closed(local_aws: LocalAws) -> None:
    arn = topic(local_aws)
    local_aws.clear_calls()
    notifier = gitopsd_sns.build({"topic_arn": arn, "endpoint_url": local_aws.endpoint_url})
    await notifier.aclose()  # nothing to close yet
    assert local_aws.calls() == []
    await notifier.send(Alert(rollout_failed()))
    await notifier.aclose()
    await notifier.send(Alert(rollout_failed()))  # a new client after a close
    await notifier.aclose()
    assert local_aws.calls() == ["Publish", "Publish"]


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "Publish",
    )


@pytest.mark.parametrize(
    ("exc", "permanent"),
    [
        (_client_error("Throttling", 400), False),
        (_client_error("ThrottlingException", 400), False),
        (_client_error("InternalError", 500), False),
        (_client_error("SomethingNew", 503), False),
        (_client_error("SomethingNew", 429), False),
        (_client_error("KMSThrottling", 400), False),
        (_client_error("NotFound", 404), True),
        (_client_error("InvalidParameter", 400), True),
        (_client_error("InvalidParameterValue", 400), True),
        (_client_error("AuthorizationError", 403), True),
        (_client_error("KMSDisabled", 400), True),
        (_client_error("SomethingNew", 400), True),
        (EndpointConnectionError(endpoint_url="https://sns.us-east-1.amazonaws.com"), False),
        (TimeoutError(), False),
        (ParamValidationError(report="bad"), True),
    ],
)
def test_errors_are_classified(exc: Exception, permanent: bool) -> None:
    error = gitopsd_sns.classify(exc, "arn:aws:sns:us-east-1:123456789012:t")
    assert isinstance(error, DeliveryError)
    assert isinstance(error, PermanentDeliveryError) is permanent


def test_a_table_with_only_common_options_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"^topic_arn: required"):
        gitopsd_sns.gitopsd_notifier(name="sns", options={})


def test_region_defaults_to_the_topics() -> None:
    notifier = gitopsd_sns.build({"topic_arn": "arn:aws:sns:eu-west-3:123456789012:alerts"})
    assert notifier.region == "eu-west-3"
    other = gitopsd_sns.build(
        {"topic_arn": "arn:aws:sns:eu-west-3:123456789012:alerts", "region": "us-east-2"}
    )
    assert other.region == "us-east-2"


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"region": "us-east-1"}, "topic_arn"),
        ({"topic_arn": "arn:aws:sqs:us-east-1:123456789012:q"}, "topic_arn"),
        ({"topic_arn": "gitopsd-alerts"}, "topic_arn"),
        ({"topic_arn": "arn:aws:sns:us-east-1:123456789012:t", "region": "Mars"}, "region"),
        (
            {"topic_arn": "arn:aws:sns:us-east-1:123456789012:t", "endpoint_url": "x"},
            "endpoint_url",
        ),
        ({"topic_arn": "arn:aws:sns:us-east-1:123456789012:t", "profile": 1}, "profile"),
        ({"topic_arn": "arn:aws:sns:us-east-1:123456789012:t", "subject": "x"}, "subject"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=r"^\w+: ") as caught:
        gitopsd_sns.gitopsd_notifier(name="sns", options=options)
    assert str(caught.value).startswith(f"{key}: ")
