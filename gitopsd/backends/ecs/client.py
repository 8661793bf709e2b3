"""The one door to the ECS API: retries, timeouts, pacing and the API budget.

Every ECS call gitopsd makes goes through :class:`EcsClient`, so the rules of
``ecs-facts.md`` section 3 hold everywhere: bounded concurrency, a timeout on
every call, throttling and 5xx retried with exponential backoff and jitter
(tenacity), DescribeServices in batches of 10 with tags, and task definitions
cached by ARN because they are immutable. Failures leave this module already
classified: :class:`BackendUnavailable` (a retry may help) or
:class:`BackendRejected` (it will not).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any, Literal, Self

import anyio
import structlog
from aiobotocore.session import AioSession
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from gitopsd.awsclient import client_kwargs
from gitopsd.backends.ecs.pacing import Pacer, shared_pacer
from gitopsd.backends.ecs.tdcache import TaskDefinitionCache
from gitopsd.config import AwsConfig
from gitopsd.errors import BackendRejected, BackendUnavailable, leaf_error
from gitopsd.telemetry import instruments as ins

log = structlog.get_logger(__name__)

#: Error codes for which waiting and trying again helps (AWS throttling and server faults).
RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalError",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)

#: (error code, message fragment) pairs that are temporary although the code is not: ECS
#: refuses concurrent registrations of one family with a ClientException (HTTP 400).
RETRYABLE_MESSAGES: tuple[tuple[str, str], ...] = (
    (
        "ClientException",
        "Too many concurrent attempts to create a new revision of the specified family",
    ),
)

_CREDENTIALS_HINT = "check the AWS credentials and IAM permissions gitopsd runs with"

#: Error code -> what to check, appended to the message of a permanent failure.
HINTS: dict[str, str] = {
    "AccessDeniedException": _CREDENTIALS_HINT,
    "UnrecognizedClientException": _CREDENTIALS_HINT,
    "ClusterNotFoundException": (
        "check apps[].cluster and the region: the cluster must exist in that account and region"
    ),
}

#: Every ECS operation gitopsd calls. :meth:`EcsClient.call` takes nothing else, so a new
#: call does not type-check until it is listed here; the IAM policy is derived from the
#: calls themselves (gitopsd.iam, docs/iam.md).
EcsOperation = Literal[
    "ContinueServiceDeployment",
    "CreateService",
    "DeleteService",
    "DeregisterTaskDefinition",
    "DescribeServiceDeployments",
    "DescribeServiceRevisions",
    "DescribeServices",
    "DescribeTaskDefinition",
    "ListServiceDeployments",
    "ListServices",
    "ListTaskDefinitions",
    "RegisterTaskDefinition",
    "StopServiceDeployment",
    "TagResource",
    "UntagResource",
    "UpdateService",
]

DESCRIBE_SERVICES_BATCH = 10
#: Writes that change a task definition's tags or status -> the parameter naming it: the
#: cached copy is forgotten before and after each (gitopsd.backends.ecs.tdcache).
_TD_MUTATIONS: dict[str, str] = {
    "TagResource": "resourceArn",
    "UntagResource": "resourceArn",
    "DeregisterTaskDefinition": "taskDefinition",
}
#: The longest wait between two attempts of one call.
MAX_RETRY_WAIT = 20.0


def retry_budget(aws: AwsConfig) -> float:
    """The longest one call can take with all its attempts and the waits between them."""
    return aws.call_timeout * aws.max_attempts + MAX_RETRY_WAIT * (aws.max_attempts - 1)


DESCRIBE_SERVICE_DEPLOYMENTS_BATCH = 20


class _Retryable(Exception):
    """Internal: wraps a failure that tenacity should retry."""

    def __init__(self, error: BackendUnavailable) -> None:
        super().__init__(str(error))
        self.error = error


#: Error codes that say the request was refused before it was carried out.
NOT_APPLIED_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
    }
)


def classify(op: str, exc: BaseException) -> BackendUnavailable | BackendRejected:
    """Turn a botocore/network failure into gitopsd's temporary/permanent errors.

    A temporary error whose request may have been carried out anyway (a 5xx, a
    read timeout, a connection dropped after the request was sent) is marked
    ``maybe_applied``: a write must be checked before it is sent again.
    """
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        message = str(err.get("Message", "")) or str(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        text = f"ECS {op} failed: {code}: {message}"
        if code in RETRYABLE_CODES or status >= 500 or _retryable_message(code, message):
            maybe = code not in NOT_APPLIED_CODES and not _retryable_message(code, message)
            return BackendUnavailable(text, maybe_applied=maybe)
        if code in HINTS:
            text += f" ({HINTS[code]})"
        return BackendRejected(text)
    if isinstance(exc, NoRegionError):
        return BackendRejected(
            "no AWS region configured: set [aws].region or apps[].region in the config, "
            "or AWS_REGION in the environment"
        )
    if isinstance(exc, NoCredentialsError):
        return BackendRejected(
            "no AWS credentials found: use the default chain (environment, profile, "
            "instance or task role) or set [aws].profile"
        )
    if isinstance(exc, EndpointConnectionError):  # no connection: nothing was sent
        return BackendUnavailable(f"ECS {op} failed: cannot reach the endpoint: {exc}")
    if isinstance(exc, ConnectionClosedError | ReadTimeoutError | TimeoutError | OSError):
        return BackendUnavailable(
            f"ECS {op} failed: no answer from the endpoint: {exc or type(exc).__name__}",
            maybe_applied=True,
        )
    if isinstance(exc, HTTPClientError):  # includes ResponseStreamingError: transport failures
        return BackendUnavailable(f"ECS {op} failed: {exc}", maybe_applied=True)
    if isinstance(exc, BotoCoreError):
        return BackendRejected(f"ECS {op} failed: {exc}")
    return BackendRejected(f"ECS {op} failed: {type(exc).__name__}: {exc}")


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def cause_code(exc: BaseException) -> str:
    """The AWS error code behind a classified error ("" when it was no AWS answer)."""
    return _error_code(exc.__cause__) if exc.__cause__ is not None else ""


async def gather(func: Callable[[str], Coroutine[Any, Any, None]], items: Sequence[str]) -> None:
    """Run ``func(item)`` for every item concurrently (the client bounds the calls); the
    first failure is raised as itself, not as an exception group."""
    if not items:
        return
    try:
        async with anyio.create_task_group() as tg:
            for item in items:
                tg.start_soon(func, item)
    except BaseExceptionGroup as group:
        raise leaf_error(group) from group


def _request_id(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("ResponseMetadata", {}).get("RequestId", ""))
    return ""


def _record_attempt(labels: dict[str, str], outcome: str, error: str, started: float) -> None:
    """One attempt in the AWS call metrics (``error.type`` only on failures)."""
    attributes = {**labels, ins.OUTCOME: outcome}
    if error:
        attributes[ins.ERROR_TYPE] = error
    ins.aws_calls.add(1, attributes)
    ins.aws_duration.record(time.monotonic() - started, attributes)


def _retryable_message(code: str, message: str) -> bool:
    lowered = message.lower()
    return any(code == c and fragment.lower() in lowered for c, fragment in RETRYABLE_MESSAGES)


class EcsClient:
    """A paced, retrying, caching ECS client for one region.

    Use as an async context manager; it owns one aiobotocore client.
    """

    def __init__(
        self,
        aws: AwsConfig,
        region: str | None = None,
        *,
        session: AioSession | None = None,
        td_cache: TaskDefinitionCache | None = None,
    ) -> None:
        self._aws = aws
        self._region = region or aws.region
        self._session = session or (
            AioSession(profile=aws.profile) if aws.profile else AioSession()
        )
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._limit = anyio.CapacityLimiter(aws.max_concurrency)
        #: Task definitions by ARN (gitopsd.backends.ecs.tdcache); shared when given.
        self.td_cache = td_cache if td_cache is not None else TaskDefinitionCache()
        #: Calls made by operation name (each attempt counts), for tests and metrics.
        self.calls: Counter[str] = Counter()
        #: Whether the endpoint has the service deployments API (None: not asked yet).
        self.service_deployments_supported: bool | None = None
        #: The process's token buckets for this endpoint, shared by every client of it.
        self.pacer: Pacer = shared_pacer(
            (aws.profile or "", self._region or "", aws.endpoint_url or ""),
            mode=aws.pacing,
            share=aws.pacing_share,
        )

    async def __aenter__(self) -> Self:
        kwargs = client_kwargs(self._aws, self._region, pool=max(10, self._aws.max_concurrency))
        try:
            self._client = await self._stack.enter_async_context(
                self._session.create_client("ecs", **kwargs)
            )
        except (BotoCoreError, ClientError) as exc:
            raise classify("client setup", exc) from exc
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with anyio.CancelScope(shield=True):
            await self._stack.aclose()

    async def call(
        self,
        op: EcsOperation,
        *,
        recover: Callable[[], Awaitable[dict[str, Any] | None]] | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """Call ECS operation ``op`` (PascalCase) with retries, a timeout and pacing.

        ``recover`` is for writes that are not idempotent: after an attempt that
        may have been carried out (see :func:`classify`), it is asked before the
        next attempt whether the write took effect; an answer it returns is used
        as the call's answer instead of sending the write again.
        """
        method: Callable[..., Awaitable[dict[str, Any]]] = getattr(self._client, _snake(op))
        uncertain = False
        attempts = 0
        throttled = False
        labels = {ins.RPC_SYSTEM: "aws-api", ins.RPC_SERVICE: "ECS", ins.RPC_METHOD: op}

        async def attempt() -> dict[str, Any]:
            nonlocal uncertain, attempts, throttled
            if op in _TD_MUTATIONS:  # its tags or status change: describe it afresh
                self.td_cache.forget(str(params.get(_TD_MUTATIONS[op], "")))
            if uncertain and recover is not None:
                found = await recover()
                if found is not None:
                    log.warning("aws.write_recovered", op=op)
                    span.set_attribute("gitopsd.aws.recovered", True)
                    return found
            delay = self.pacer.reserve(op)
            if delay > 0:
                log.info("aws.paced", op=op, wait=round(delay, 3))
                await anyio.sleep(delay)
            self.calls[op] += 1
            attempts += 1
            started = time.monotonic()
            try:
                async with self._limit:
                    with anyio.fail_after(self._aws.call_timeout):
                        answer = await method(**params)
            except Exception as exc:
                code = _error_code(exc)
                outcome = "throttled" if code in NOT_APPLIED_CODES else "error"
                throttled = throttled or outcome == "throttled"
                if outcome == "throttled":
                    self.pacer.throttled(op)  # slow this class down for every caller
                _record_attempt(labels, outcome, code or type(exc).__name__, started)
                request_id = _request_id(exc)
                if request_id:
                    span.set_attribute(ins.REQUEST_ID, request_id)
                error = classify(op, exc)
                if isinstance(error, BackendUnavailable):
                    uncertain = uncertain or error.maybe_applied
                    log.warning("aws.retry", op=op, error=str(error))
                    raise _Retryable(error) from exc
                raise error from exc
            _record_attempt(labels, "ok", "", started)
            if op in _TD_MUTATIONS:  # and a describe made meanwhile saw the old ones
                self.td_cache.forget(str(params.get(_TD_MUTATIONS[op], "")))
            request_id = str(answer.get("ResponseMetadata", {}).get("RequestId", ""))
            if request_id:
                span.set_attribute(ins.REQUEST_ID, request_id)
            return answer

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Retryable),
            wait=wait_random_exponential(multiplier=0.25, max=MAX_RETRY_WAIT),
            stop=stop_after_attempt(self._aws.max_attempts),
            reraise=True,
        )
        with ins.tracer.start_as_current_span(
            f"ECS/{op}",
            kind=SpanKind.CLIENT,
            attributes={**labels, "cloud.region": self._region or ""},
            record_exception=False,
        ) as span:
            try:
                async for state in retrying:
                    with state:
                        return await attempt()
            except _Retryable as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc.error)))
                raise exc.error from exc.__cause__
            except BackendRejected as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                raise
            finally:
                span.set_attributes({ins.ATTEMPTS: attempts, ins.THROTTLED: throttled})
        raise AssertionError("unreachable")  # pragma: no cover

    # -- reads -------------------------------------------------------------------------

    async def describe_services(
        self, cluster: str, names: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Live services by name (ACTIVE or DRAINING only), 10 per call, with tags."""
        found: dict[str, dict[str, Any]] = {}

        async def batch(chunk: Sequence[str]) -> None:
            out = await self.call(
                "DescribeServices", cluster=cluster, services=list(chunk), include=["TAGS"]
            )
            for svc in out.get("services", []):
                if svc.get("status") != "INACTIVE":
                    found[svc["serviceName"]] = svc

        chunks = [
            names[i : i + DESCRIBE_SERVICES_BATCH]
            for i in range(0, len(names), DESCRIBE_SERVICES_BATCH)
        ]
        try:
            async with anyio.create_task_group() as tg:
                for chunk in chunks:
                    tg.start_soon(batch, chunk)
        except BaseExceptionGroup as group:
            raise leaf_error(group) from group
        return found

    async def task_definition(self, arn: str, *, fresh: bool = False) -> dict[str, Any]:
        """A task definition (with ``tags``) by full ARN, from the cache when seen before.

        ``fresh``: describe it even when cached, for a decision to write that rests on
        its tags or status (which, unlike its content, can change).
        """
        cached = None if fresh else self.td_cache.get(arn)
        if cached is None:
            cached = await self._describe_td(arn)
        return cached

    async def latest_task_definition_arn(self, family: str) -> str | None:
        """The ARN of the newest ACTIVE revision of ``family``; None when it has none.

        ListTaskDefinitions takes the full family name (``familyPrefix`` is not a
        prefix there) and answers an empty list for an unknown family, so no error
        text has to be read. The highest revision of the page is taken, so an
        endpoint that ignores ``sort`` (moto) gives the same answer.
        """
        out = await self.call(
            "ListTaskDefinitions",
            familyPrefix=family,
            status="ACTIVE",
            sort="DESC",
            maxResults=1,
        )
        arns = [a for a in out.get("taskDefinitionArns", []) if _family(a) == family]
        return max(arns, key=_revision_number) if arns else None

    async def latest_task_definition(
        self, family: str, *, fresh: bool = False
    ) -> dict[str, Any] | None:
        """The newest ACTIVE revision of ``family`` (cached by ARN unless ``fresh``), or None
        when it has none."""
        arn = await self.latest_task_definition_arn(family)
        return None if arn is None else await self.task_definition(arn, fresh=fresh)

    async def _describe_td(self, ref: str) -> dict[str, Any]:
        out = await self.call("DescribeTaskDefinition", taskDefinition=ref, include=["TAGS"])
        td = dict(out["taskDefinition"])
        td["tags"] = out.get("tags", [])
        self.td_cache.put(td)
        return td

    # -- writes ------------------------------------------------------------------------

    async def register_task_definition(
        self,
        spec: Mapping[str, Any],
        *,
        recover: Callable[[], Awaitable[dict[str, Any] | None]] | None = None,
    ) -> dict[str, Any]:
        """Register a revision. RegisterTaskDefinition has no client token, so after an
        answer that was lost (5xx, timeout) ``recover`` looks for the revision first."""
        out = await self.call("RegisterTaskDefinition", recover=recover, **spec)
        td = dict(out["taskDefinition"])
        td["tags"] = out.get("tags", spec.get("tags", []))
        self.td_cache.put(td)
        return td

    async def create_service(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        out = await self.call("CreateService", **spec)
        return dict(out["service"])

    async def update_service(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        out = await self.call("UpdateService", **spec)
        return dict(out["service"])

    # -- service deployments (when the endpoint has them) ---------------------------------

    async def describe_service_deployments(self, arns: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Service deployments by ARN (20 per call). Raise ``BackendRejected`` if unsupported."""
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(arns), DESCRIBE_SERVICE_DEPLOYMENTS_BATCH):
            chunk = list(arns[i : i + DESCRIBE_SERVICE_DEPLOYMENTS_BATCH])
            out = await self.call("DescribeServiceDeployments", serviceDeploymentArns=chunk)
            for sd in out.get("serviceDeployments", []):
                found[str(sd.get("serviceDeploymentArn", ""))] = sd
        return found

    async def stop_service_deployment(self, arn: str) -> str:
        """StopServiceDeployment(stopType=ROLLBACK): ECS rolls the deployment back."""
        out = await self.call(
            "StopServiceDeployment", serviceDeploymentArn=arn, stopType="ROLLBACK"
        )
        return str(out.get("serviceDeploymentArn", arn))

    async def describe_service_revisions(self, arns: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Service revisions by ARN (20 per call)."""
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(arns), DESCRIBE_SERVICE_DEPLOYMENTS_BATCH):
            chunk = list(arns[i : i + DESCRIBE_SERVICE_DEPLOYMENTS_BATCH])
            out = await self.call("DescribeServiceRevisions", serviceRevisionArns=chunk)
            for rev in out.get("serviceRevisions", []):
                found[str(rev.get("serviceRevisionArn", ""))] = rev
        return found

    async def list_service_deployments(
        self, cluster: str, service: str, statuses: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The newest service deployments of a service with one of ``statuses`` (one page)."""
        out = await self.call(
            "ListServiceDeployments", cluster=cluster, service=service, status=list(statuses)
        )
        return list(out.get("serviceDeployments", []))


def _family(arn: str) -> str:
    return arn.rsplit("/", 1)[-1].split(":", 1)[0]


def _revision_number(arn: str) -> int:
    try:
        return int(arn.rsplit(":", 1)[-1])
    except ValueError:
        return -1


def _snake(op: str) -> str:
    out = []
    for i, ch in enumerate(op):
        if ch.isupper() and i and not op[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
