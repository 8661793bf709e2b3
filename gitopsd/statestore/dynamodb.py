"""The state store in one Amazon DynamoDB table (``[state] backend = "dynamodb"``).

For gitopsd on Fargate, whose disk goes with every task replacement. The table
is never created by gitopsd: docs/state.md gives the one ``aws dynamodb
create-table`` command. Its key schema is ``ns`` (partition key, string: the
namespace) and ``key`` (sort key, string); each item also holds ``ver`` (a
number, the document's version) and ``doc`` (a string, the JSON document).

Every call is one of four DynamoDB actions, made here and nowhere else (the IAM
policy is derived from these calls): ``GetItem`` and ``Query`` (strongly
consistent reads), ``PutItem`` with a ``ConditionExpression`` on ``ver`` (the
compare-and-set), ``DeleteItem``. Throttling, 5xx and network failures are
retried with exponential backoff and jitter (tenacity), each attempt bounded by
``[aws].call_timeout``; ``ConditionalCheckFailedException`` is a
:class:`~gitopsd.statestore.StateConflict`; a missing table or a refused
permission is a :class:`~gitopsd.statestore.StateRejected` that says what to do.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any, Self

import anyio
import structlog
from aiobotocore.session import AioSession
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
)
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
from tenacity import wait_random_exponential as wait_jitter

from gitopsd.awsclient import client_kwargs
from gitopsd.config import AwsConfig
from gitopsd.statestore import (
    Entry,
    StateConflict,
    StateRejected,
    StateUnavailable,
    check_names,
    serialise,
)

log = structlog.get_logger(__name__)

#: Error codes for which waiting and trying again helps.
RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "LimitExceededException",
        "TransactionConflictException",
    }
)
SETUP = 'create it with the command in docs/state.md ("Setting up the DynamoDB table")'
MAX_RETRY_WAIT = 10.0


class DynamoDbStore:
    """Documents as items of one DynamoDB table; an async context manager owning its client."""

    def __init__(
        self,
        table: str,
        aws: AwsConfig,
        *,
        region: str | None = None,
        session: AioSession | None = None,
    ) -> None:
        self.table = table
        self.location = f"dynamodb://{table}"
        self._aws = aws
        self._region = region or aws.region
        self._session = session or (
            AioSession(profile=aws.profile) if aws.profile else AioSession()
        )
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def __aenter__(self) -> Self:
        kwargs = client_kwargs(self._aws, self._region)
        try:
            self._client = await self._stack.enter_async_context(
                self._session.create_client("dynamodb", **kwargs)
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._classify("client setup", exc) from None
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._stack.aclose()

    # -- the StateStore protocol --------------------------------------------------------

    async def get(self, namespace: str, key: str) -> Entry | None:
        check_names(namespace, key)
        out = await self._call(
            "GetItem",
            lambda: self._client.get_item(
                TableName=self.table, Key=_key(namespace, key), ConsistentRead=True
            ),
        )
        item = out.get("Item")
        return None if item is None else _entry(namespace, key, item)

    async def put(self, namespace: str, key: str, value: Mapping[str, Any], *, expect: int) -> int:
        check_names(namespace, key)
        text = serialise(namespace, key, value)
        new = expect + 1
        item = {**_key(namespace, key), "ver": {"N": str(new)}, "doc": {"S": text}}
        if expect == 0:
            condition = "attribute_not_exists(ver)"
            values: dict[str, Any] = {}
        else:
            condition = "ver = :expected"
            values = {"ExpressionAttributeValues": {":expected": {"N": str(expect)}}}
        uncertain = False

        async def attempt() -> Any:
            nonlocal uncertain
            try:
                return await self._client.put_item(
                    TableName=self.table, Item=item, ConditionExpression=condition, **values
                )
            except ClientError as exc:
                if _code(exc) == "ConditionalCheckFailedException":
                    raise
                uncertain = True  # a 5xx or lost answer: the write may have been made
                raise
            except Exception:
                uncertain = True
                raise

        try:
            await self._call("PutItem", attempt)
        except StateConflict:
            if uncertain:
                # An earlier attempt may have been ours: it is, if the item holds our document.
                found = await self.get(namespace, key)
                if found is not None and found.version == new and found.value == json.loads(text):
                    return new
            raise StateConflict(namespace, key, expect) from None
        return new

    async def delete(self, namespace: str, key: str, *, expect: int | None = None) -> None:
        check_names(namespace, key)
        extra: dict[str, Any] = {}
        if expect is not None:
            extra = {
                "ConditionExpression": "attribute_not_exists(ver) OR ver = :expected",
                "ExpressionAttributeValues": {":expected": {"N": str(expect)}},
            }
        try:
            await self._call(
                "DeleteItem",
                lambda: self._client.delete_item(
                    TableName=self.table, Key=_key(namespace, key), **extra
                ),
            )
        except StateConflict:
            raise StateConflict(namespace, key, expect or 0) from None

    async def list(self, namespace: str) -> dict[str, Entry]:
        check_names(namespace, "-")
        out: dict[str, Entry] = {}
        start: dict[str, Any] | None = None
        while True:
            page: dict[str, Any] = {"ExclusiveStartKey": start} if start else {}
            answer = await self._call(
                "Query",
                lambda page=page: self._client.query(  # type: ignore[misc]
                    TableName=self.table,
                    KeyConditionExpression="ns = :ns",
                    ExpressionAttributeValues={":ns": {"S": namespace}},
                    ConsistentRead=True,
                    **page,
                ),
            )
            for item in answer.get("Items", []):
                k = str(item.get("key", {}).get("S", ""))
                if k:
                    out[k] = _entry(namespace, k, item)
            start = answer.get("LastEvaluatedKey")
            if not start:
                return out

    # -- calls --------------------------------------------------------------------------

    async def _call(self, op: str, send: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
        """One action with retries and a timeout per attempt; failures classified."""

        async def attempt() -> dict[str, Any]:
            try:
                with anyio.fail_after(self._aws.call_timeout):
                    answer: dict[str, Any] = await send()
                    return answer
            except Exception as exc:
                error = self._classify(op, exc)
                if isinstance(error, StateUnavailable):
                    log.warning("state.retry", op=op, error=str(error))
                raise error from exc

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(StateUnavailable),
            wait=wait_jitter(multiplier=0.2, max=MAX_RETRY_WAIT),
            stop=stop_after_attempt(self._aws.max_attempts),
            reraise=True,
        )
        async for state in retrying:
            with state:
                return await attempt()
        raise AssertionError("unreachable")  # pragma: no cover

    def _classify(
        self, op: str, exc: BaseException
    ) -> StateUnavailable | StateRejected | StateConflict:
        where = f"state store {self.location}: DynamoDB {op} failed"
        if isinstance(exc, ClientError):
            code = _code(exc)
            message = str(exc.response.get("Error", {}).get("Message", "")) or str(exc)
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code == "ConditionalCheckFailedException":
                return StateConflict("?", "?", -1)  # the caller names the document
            if code in RETRYABLE_CODES or status >= 500:
                return StateUnavailable(f"{where}: {code}: {message}")
            if code == "ResourceNotFoundException":
                return StateRejected(
                    f"{where}: the table {self.table!r} ([state].table) does not exist in region "
                    f"{self._region or 'of the default chain'}: {SETUP}; gitopsd never creates it"
                )
            if code in ("AccessDeniedException", "UnrecognizedClientException"):
                return StateRejected(
                    f"{where}: {code}: {message} (the task role or credentials need "
                    "dynamodb:GetItem, PutItem, DeleteItem and Query on the table; see "
                    "docs/state.md)"
                )
            return StateRejected(f"{where}: {code}: {message}")
        if isinstance(exc, NoRegionError):
            return StateRejected(
                f"{where}: no AWS region configured: set [state].region or [aws].region"
            )
        if isinstance(exc, NoCredentialsError):
            return StateRejected(f"{where}: no AWS credentials found (task role, environment)")
        if isinstance(exc, EndpointConnectionError | HTTPClientError | TimeoutError | OSError):
            return StateUnavailable(f"{where}: {exc or type(exc).__name__}")
        if isinstance(exc, BotoCoreError):
            return StateRejected(f"{where}: {exc}")
        return StateRejected(f"{where}: {type(exc).__name__}: {exc}")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _key(namespace: str, key: str) -> dict[str, Any]:
    return {"ns": {"S": namespace}, "key": {"S": key}}


def _entry(namespace: str, key: str, item: Mapping[str, Any]) -> Entry:
    """An item as an entry; a damaged one (no version, a document that is not JSON) as
    empty, with its version when it has one (so the next write replaces it)."""
    try:
        version = int(item.get("ver", {}).get("N", "0"))
    except (TypeError, ValueError, AttributeError):
        version = 0
    text = item.get("doc", {}).get("S") if isinstance(item.get("doc"), dict) else None
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        value = None
    if isinstance(value, dict) and version > 0:
        return Entry(value, version)
    log.warning(
        "state.damaged",
        namespace=namespace,
        key=key,
        hint="read as empty; the next write replaces it",
    )
    return Entry({}, max(version, 0), damaged=True)
