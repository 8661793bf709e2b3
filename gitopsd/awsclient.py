"""The settings of every AWS client gitopsd makes, from ``[aws]``, in one place.

ECS, DynamoDB (the state store), STS, SSM and Secrets Manager clients take the same
endpoint, region and timeouts, and leave retries to gitopsd's own (tenacity, with errors
classified as temporary or permanent): botocore makes at most ``attempts`` attempts.
"""

from __future__ import annotations

from typing import Any

from aiobotocore.config import AioConfig

from gitopsd.config import AwsConfig


def client_kwargs(
    aws: AwsConfig, region: str | None = None, *, attempts: int = 1, pool: int | None = None
) -> dict[str, Any]:
    """Keyword arguments for ``session.create_client(service, **...)``."""
    extra: dict[str, Any] = {"max_pool_connections": pool} if pool else {}
    kwargs: dict[str, Any] = {
        "config": AioConfig(
            connect_timeout=min(10.0, aws.call_timeout),
            read_timeout=aws.call_timeout,
            retries={"total_max_attempts": attempts, "mode": "standard"},
            **extra,
        )
    }
    if region or aws.region:
        kwargs["region_name"] = region or aws.region
    if aws.endpoint_url:
        kwargs["endpoint_url"] = aws.endpoint_url
    return kwargs
