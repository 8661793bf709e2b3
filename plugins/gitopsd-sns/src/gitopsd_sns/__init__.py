"""The Amazon SNS notifier: each alert published to an SNS topic.

Why: SNS fans one alert out to whatever an AWS shop already uses (email, SMS,
SQS queues, Lambda functions, AWS Chatbot, PagerDuty's SNS integration), with
IAM instead of a shared webhook secret, and without gitopsd knowing the
subscribers. Each alert is one ``Publish``:

- ``Message``: the JSON of :meth:`gitopsd.alerts.Alert.to_json` (kind, app,
  revision, commit_message, link, severity, reason, stage, message, title, at,
  deployment, fields, changes, suppressed, repeat); if it would exceed SNS's
  256 KiB, ``changes`` is dropped first (``"changes_truncated": true``);
- ``Subject`` (used by email subscriptions): the alert's title on one line, at
  most :data:`MAX_SUBJECT` characters;
- ``MessageAttributes`` ``app``, ``kind`` and ``severity`` (``String``), so an
  SQS or Lambda subscription can filter (``FilterPolicy = {"severity": ["error"]}``);
- on a FIFO topic (``....fifo``) ``MessageGroupId`` is the app and
  ``MessageDeduplicationId`` a stable id of the alert.

Options (``[plugins.sns]``), besides the common notifier options (``min_severity``,
``apps``, ``kinds``, ``dedup_window``, ``retries``, ``timeout``...: :mod:`gitopsd.alerts`):

``topic_arn``
    Required: ``arn:aws:sns:REGION:ACCOUNT:NAME``.
``region``
    Optional: the region of the client (default: the topic ARN's region).
``endpoint_url``
    Optional: another SNS endpoint (a VPC endpoint, or the local endpoint in tests).
``profile``
    Optional: a profile of the AWS config files; else the default credential chain
    (environment, web identity, ECS task role, instance profile...).

The client is created on the first alert (aiobotocore, botocore's own retries off:
the channel retries) and closed by :meth:`SnsNotifier.aclose`. Each call is bounded
(connect and read timeouts, and :data:`CALL_TIMEOUT` overall); the channel bounds
each attempt with its ``timeout`` too. Errors are classified for the channel:
throttling, 5xx, timeouts and connection failures raise
:class:`~gitopsd.alerts.DeliveryError` (retried); a missing topic, an invalid
parameter, a refused authorisation raise
:class:`~gitopsd.alerts.PermanentDeliveryError` (not retried).

Installed without a ``[plugins.sns]`` table, the plugin is left inactive by gitopsd
(its refusal is only logged at debug level); with a table, a missing ``topic_arn`` is an
error.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore import exceptions as boto

from gitopsd.alerts import Alert, DeliveryError, PermanentDeliveryError, string_option
from gitopsd.plugins import hookimpl

__all__ = ["SnsNotifier", "classify", "gitopsd_notifier", "publish_args"]

#: Options this plugin takes (the common channel options are removed before it sees them).
OPTIONS = ("topic_arn", "region", "endpoint_url", "profile")
#: SNS: "Subjects must be ... less than 100 characters long".
MAX_SUBJECT = 99
#: SNS's limit on a message (with its attributes), in bytes; a margin is kept for those.
MAX_MESSAGE = 256 * 1024 - 4096
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
#: Bound of one Publish (credential resolution included).
CALL_TIMEOUT = 30.0

_TOPIC_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):sns:(?P<region>[a-z0-9-]+):\d{12}:[\w.-]+$"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")

#: Error codes a retry can help with, whatever the status.
_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "KMSThrottling",
        "KMSThrottlingException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        # A refreshed credential (a role's) may succeed where this one expired.
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
    }
)
#: Error codes no retry of the same alert can help with.
_PERMANENT_CODES = frozenset(
    {
        "NotFound",
        "NotFoundException",
        "InvalidParameter",
        "InvalidParameterException",
        "InvalidParameterValue",
        "InvalidParameterValueException",
        "ParameterValueInvalid",
        "ValidationError",
        "AuthorizationError",
        "AuthorizationErrorException",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidSecurity",
        "InvalidSecurityException",
        "OptInRequired",
        "EndpointDisabled",
        "KMSAccessDenied",
        "KMSDisabled",
        "KMSInvalidState",
        "KMSNotFound",
        "KMSOptInRequired",
    }
)


def classify(exc: BaseException, topic_arn: str = "") -> DeliveryError:
    """The delivery error for a failure of Publish: permanent or worth a retry."""
    where = f" ({topic_arn})" if topic_arn else ""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, boto.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", ""))[:200]
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        text = f"SNS refused Publish{where}: {code or status}: {message}".rstrip(": ")
        if code in _TRANSIENT_CODES:
            return DeliveryError(text)
        if code in _PERMANENT_CODES:
            return PermanentDeliveryError(text)
        if isinstance(status, int) and (status == 429 or status >= 500):
            return DeliveryError(text)
        if isinstance(status, int) and 400 <= status < 500:
            return PermanentDeliveryError(text)
        return DeliveryError(text)
    if isinstance(exc, boto.ParamValidationError | boto.ProfileNotFound | boto.NoRegionError):
        return PermanentDeliveryError(f"SNS Publish cannot be sent{where}: {exc}")
    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
        return DeliveryError(f"no AWS credentials for SNS{where}: {exc}")
    if isinstance(exc, TimeoutError):
        return DeliveryError(f"SNS Publish timed out{where}")
    if isinstance(exc, boto.BotoCoreError | OSError):
        return DeliveryError(f"could not reach SNS{where}: {type(exc).__name__}: {exc}")
    return DeliveryError(f"SNS Publish failed{where}: {type(exc).__name__}: {exc}")


def subject(alert: Alert) -> str:
    """The title on one line, without control characters, at most :data:`MAX_SUBJECT` long."""
    text = " ".join(_CONTROL.sub(" ", alert.title).split())
    if len(text) > MAX_SUBJECT:
        text = text[: MAX_SUBJECT - 3].rstrip() + "..."
    return text or "gitopsd alert"


def _dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def message(alert: Alert) -> str:
    """The JSON message, shortened to fit SNS's size limit when it must be."""
    doc = alert.to_json()
    text = _dumps(doc)
    if len(text.encode()) <= MAX_MESSAGE:
        return text
    doc["changes"] = []
    doc["changes_truncated"] = True
    text = _dumps(doc)
    if len(text.encode()) <= MAX_MESSAGE:
        return text
    doc["fields"] = doc["fields"][:100]
    doc["message"] = doc["message"][:8192]
    doc["commit_message"] = doc["commit_message"][:1024]
    return _dumps(doc)


def delivery_id(alert: Alert) -> str:
    """A stable id of ``alert`` (the same for each attempt): sha256 of dedup key and time."""
    e = alert.event
    material = json.dumps([*e.dedup_key(), repr(e.at)], separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()


def publish_args(topic_arn: str, alert: Alert) -> dict[str, Any]:
    """The keyword arguments of ``Publish`` for ``alert``."""
    e = alert.event
    attributes = {
        name: {"DataType": "String", "StringValue": value}
        for name, value in (("app", e.app), ("kind", e.kind), ("severity", str(e.severity)))
        if value  # SNS refuses an empty attribute value
    }
    args: dict[str, Any] = {
        "TopicArn": topic_arn,
        "Message": message(alert),
        "Subject": subject(alert),
        "MessageAttributes": attributes,
    }
    if topic_arn.endswith(".fifo"):
        args["MessageGroupId"] = e.app[:128] or "gitopsd"
        args["MessageDeduplicationId"] = delivery_id(alert)
    return args


class SnsNotifier:
    """Publishes alerts to one SNS topic (see the module docstring)."""

    channel_defaults: Mapping[str, Any] = {}

    def __init__(
        self,
        topic_arn: str,
        *,
        region: str,
        endpoint_url: str | None = None,
        profile: str | None = None,
        call_timeout: float = CALL_TIMEOUT,
    ) -> None:
        self.topic_arn = topic_arn
        self.region = region
        self.endpoint_url = endpoint_url
        self.profile = profile
        self.call_timeout = call_timeout
        self._session: AioSession | None = None  # kept: it caches the loaded service model
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"SnsNotifier({self.topic_arn!r})"

    async def _get_client(self) -> Any:
        async with self._lock:
            if self._client is not None:
                return self._client
            stack = AsyncExitStack()
            try:
                if self._session is None:
                    self._session = AioSession(profile=self.profile)
                session = self._session
                config = AioConfig(
                    connect_timeout=CONNECT_TIMEOUT,
                    read_timeout=READ_TIMEOUT,
                    retries={"total_max_attempts": 1},  # the channel retries
                )
                client = await stack.enter_async_context(
                    session.create_client(
                        "sns",
                        region_name=self.region,
                        endpoint_url=self.endpoint_url,
                        config=config,
                    )
                )
            except BaseException:
                await stack.aclose()
                raise
            self._stack, self._client = stack, client
            return client

    async def send(self, alert: Alert) -> None:
        args = publish_args(self.topic_arn, alert)
        try:
            with anyio.fail_after(self.call_timeout):
                client = await self._get_client()
                await client.publish(**args)
        except Exception as exc:
            raise classify(exc, self.topic_arn) from exc

    async def aclose(self) -> None:
        """Close the client (if one was created); the next send creates another."""
        async with self._lock:
            stack, self._stack, self._client = self._stack, None, None
            if stack is not None:
                await stack.aclose()


def build(options: Mapping[str, Any]) -> SnsNotifier:
    """The notifier for the plugin's own options; ``ValueError("key: message")`` if bad."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(
            f"{unknown[0]}: unknown option (the sns notifier takes {', '.join(OPTIONS)} "
            "and the common notifier options)"
        )
    topic_arn = string_option(options, "topic_arn")
    if topic_arn is None:
        raise ValueError("topic_arn: required (arn:aws:sns:REGION:ACCOUNT:NAME)")
    match = _TOPIC_ARN.match(topic_arn)
    if match is None:
        raise ValueError(f"topic_arn: {topic_arn!r} is not an SNS topic ARN (arn:aws:sns:...)")
    region = string_option(options, "region") or match.group("region")
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d+", region):
        raise ValueError(f"region: {region!r} is not an AWS region name (e.g. us-east-1)")
    endpoint_url = string_option(options, "endpoint_url")
    if endpoint_url is not None and not re.match(r"^https?://[^/\s]+", endpoint_url):
        raise ValueError("endpoint_url: must be an http:// or https:// URL")
    return SnsNotifier(
        topic_arn,
        region=region,
        endpoint_url=endpoint_url,
        profile=string_option(options, "profile"),
    )


@hookimpl
def gitopsd_notifier(name: str, options: Mapping[str, Any]) -> SnsNotifier:
    return build(options)
