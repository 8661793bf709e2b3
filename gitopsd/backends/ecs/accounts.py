"""Which AWS identity each app deploys with: gitopsd's own, or a role it assumes.

A platform team deploys into several accounts from one gitopsd: an app that
sets ``apps[].aws.role_arn`` deploys with that role's credentials, assumed with
``sts:AssumeRole`` from gitopsd's own (optionally with an ``ExternalId``).
The credentials are aiobotocore's :class:`AioDeferredRefreshableCredentials`:
the library refreshes them before they expire (15 minutes before, at the
latest 10) by calling :func:`_assume`, so a long-running agent never sends a
call with expired credentials.

One session per identity (gitopsd's own, or one per role, external id and
session name), so every client made from it shares the credentials; the ECS
backend keeps one client per identity and region. The account of each
identity is asked once (``sts:GetCallerIdentity``) and checked against the
guard-rails (:func:`gitopsd.backends.ecs.guardrails.account_problem`) before
an app's first write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import anyio
import structlog
from aiobotocore.credentials import AioCredentialResolver, AioDeferredRefreshableCredentials
from aiobotocore.session import AioSession
from botocore.credentials import CredentialProvider
from botocore.exceptions import BotoCoreError, ClientError
from opentelemetry.trace import SpanKind, Status, StatusCode
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from gitopsd.awsclient import client_kwargs
from gitopsd.backends.ecs.client import classify
from gitopsd.config import AppAwsConfig, AppConfig, AwsConfig
from gitopsd.errors import BackendRejected, BackendUnavailable
from gitopsd.telemetry import instruments as ins

log = structlog.get_logger(__name__)

#: An identity: ``()`` for gitopsd's own credentials, else (role ARN, external id, session).
Identity = tuple[str, ...]
OWN: Identity = ()


def identity_of(app: AppConfig) -> Identity:
    """The identity ``app`` deploys with (the key of sessions, accounts and clients)."""
    if app.aws is None:
        return OWN
    return (app.aws.role_arn, app.aws.external_id or "", session_name(app))


def session_name(app: AppConfig) -> str:
    """The role session name CloudTrail shows for ``app``'s calls."""
    if app.aws is not None and app.aws.session_name:
        return app.aws.session_name
    return f"gitopsd-{app.name}"[:64]


@contextmanager
def aws_span(service: str, op: str) -> Iterator[None]:
    """A client span for one call of a service other than ECS (``STS/AssumeRole``), as
    :class:`~gitopsd.backends.ecs.client.EcsClient` makes one per ECS call."""
    labels = {ins.RPC_SYSTEM: "aws-api", ins.RPC_SERVICE: service, ins.RPC_METHOD: op}
    with ins.tracer.start_as_current_span(
        f"{service}/{op}", kind=SpanKind.CLIENT, attributes=labels, record_exception=False
    ) as span:
        try:
            yield
        except Exception as exc:
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise


def sts_kwargs(aws: AwsConfig, region: str | None) -> dict[str, Any]:
    """A client of STS, SSM or Secrets Manager (two attempts each; callers retry more)."""
    return client_kwargs(aws, region, attempts=2)


class _AssumedRoleProvider(CredentialProvider):  # type: ignore[misc]
    """A credential provider for one role: its credentials refresh themselves."""

    METHOD = "gitopsd-assume-role"
    CANONICAL_NAME = "custom-gitopsd-assume-role"

    def __init__(
        self, refresh: Callable[[], Any], time_fetcher: Callable[[], datetime] | None
    ) -> None:
        super().__init__()
        self._refresh = refresh
        self._time_fetcher = time_fetcher

    async def load(self) -> AioDeferredRefreshableCredentials:
        if self._time_fetcher is None:
            return AioDeferredRefreshableCredentials(self._refresh, self.METHOD)
        return AioDeferredRefreshableCredentials(
            self._refresh, self.METHOD, time_fetcher=self._time_fetcher
        )


class Accounts:
    """Sessions per identity, and the account of each (asked once)."""

    def __init__(
        self,
        aws: AwsConfig,
        *,
        base: AioSession | None = None,
        time_fetcher: Callable[[], datetime] | None = None,
    ) -> None:
        self.aws = aws
        self.base = base or (AioSession(profile=aws.profile) if aws.profile else AioSession())
        self._time_fetcher = time_fetcher
        self._sessions: dict[Identity, AioSession] = {OWN: self.base}
        self._accounts: dict[Identity, str] = {}
        self._lock = anyio.Lock()
        #: AssumeRole calls made, per role ARN (for tests and logs).
        self.assumed: dict[str, int] = {}

    def session(self, app: AppConfig) -> AioSession:
        """The session whose credentials ``app`` deploys with (made once per identity)."""
        key = identity_of(app)
        found = self._sessions.get(key)
        if found is None:
            assert app.aws is not None
            found = AioSession()
            refresh = self._refresher(app.aws, session_name(app))
            provider = _AssumedRoleProvider(refresh, self._time_fetcher)
            found.register_component("credential_provider", AioCredentialResolver([provider]))
            self._sessions[key] = found
        return found

    def _refresher(self, role: AppAwsConfig, name: str) -> Callable[[], Any]:
        async def refresh() -> dict[str, str]:
            params: dict[str, Any] = {
                "RoleArn": role.role_arn,
                "RoleSessionName": name,
                "DurationSeconds": role.duration,
            }
            if role.external_id:
                params["ExternalId"] = role.external_id
            try:
                async with self.base.create_client("sts", **sts_kwargs(self.aws, None)) as sts:
                    with aws_span("STS", "AssumeRole"):
                        answer = await sts.assume_role(**params)
            except (BotoCoreError, ClientError) as exc:
                raise _sts_error("AssumeRole", exc, role.role_arn) from exc
            self.assumed[role.role_arn] = self.assumed.get(role.role_arn, 0) + 1
            creds = answer["Credentials"]
            expiry = creds["Expiration"]
            log.info("aws.role_assumed", role=role.role_arn, expires=str(expiry))
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": expiry.isoformat() if isinstance(expiry, datetime) else expiry,
            }

        return refresh

    async def account(self, app: AppConfig, region: str | None = None) -> str:
        """The AWS account id of ``app``'s credentials (``sts:GetCallerIdentity``, cached;
        temporary failures retried like every other AWS call)."""
        key = identity_of(app)
        async with self._lock:
            found = self._accounts.get(key)
            if found is None:
                retrying = AsyncRetrying(
                    retry=retry_if_exception_type(BackendUnavailable),
                    wait=wait_random_exponential(multiplier=0.2, max=5.0),
                    stop=stop_after_attempt(self.aws.max_attempts),
                    reraise=True,
                )
                async for attempt in retrying:
                    with attempt:
                        answer = await self._caller_identity(app, region)
                found = self._accounts[key] = str(answer["Account"])
                log.info("aws.identity", app=app.name, account=found, arn=answer.get("Arn"))
            return found

    async def _caller_identity(self, app: AppConfig, region: str | None) -> dict[str, Any]:
        session = self.session(app)
        try:
            with anyio.fail_after(self.aws.call_timeout * 2):
                async with session.create_client("sts", **sts_kwargs(self.aws, region)) as sts:
                    with aws_span("STS", "GetCallerIdentity"):
                        return dict(await sts.get_caller_identity())
        except (BotoCoreError, ClientError, TimeoutError) as exc:
            role = app.aws.role_arn if app.aws else ""
            raise _sts_error("GetCallerIdentity", exc, role) from exc


def _sts_error(op: str, exc: BaseException, role: str) -> BackendUnavailable | BackendRejected:
    """An STS failure, classified, naming the role and what to check."""
    if isinstance(exc, BackendUnavailable | BackendRejected):
        return exc
    error = classify(op, exc)
    text = str(error).removeprefix("ECS ")
    if role:
        text = (
            f"cannot assume {role} (apps[].aws.role_arn): {text}; check that the role exists, "
            "that its trust policy lets gitopsd's identity assume it (and the external id), "
            "and that gitopsd may call sts:AssumeRole on it"
        )
    else:
        text = f"STS {text}"
    if isinstance(error, BackendUnavailable):
        return BackendUnavailable(text)
    return BackendRejected(text)
