"""The built-in ``cloudwatch`` gate: GetMetricData queries compared with a threshold.

A check reads every query of the gate over the last ``lookback`` (metric math
included: an ``Expression`` query may combine the ``MetricStat`` ones, which then
say ``ReturnData = false``), takes the newest data point of each series
returned and compares it with ``threshold`` the way a CloudWatch alarm does
(``comparison`` names the failing condition). A series without data in the
window does not fail the check (as an alarm treating missing data as not
breaching). Throttling, 5xx answers and network errors are temporary (the check
does not count); anything else CloudWatch refuses (a bad query) is permanent.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from gitopsd.awsclient import client_kwargs
from gitopsd.config import AwsConfig, CloudWatchGateConfig, GateConfig
from gitopsd.errors import PermanentError, TemporaryError
from gitopsd.gates.base import GateContext, GateResult

#: ComparisonOperator -> (the failing test, its sign for messages).
COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanOrEqualToThreshold": (operator.ge, ">="),
    "GreaterThanThreshold": (operator.gt, ">"),
    "LessThanThreshold": (operator.lt, "<"),
    "LessThanOrEqualToThreshold": (operator.le, "<="),
}

_TEMPORARY_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "LimitExceeded",
        "ServiceUnavailable",
        "InternalServiceError",
        "InternalFailure",
        "RequestTimeout",
    }
)


def _queries(config: CloudWatchGateConfig) -> list[dict[str, Any]]:
    """The gate's queries with ``period`` filled in where a query gives none."""
    out = []
    for q in config.queries:
        q = dict(q)
        if "MetricStat" in q:
            q["MetricStat"] = {"Period": config.period, **q["MetricStat"]}
        elif "Expression" in q and "Period" not in q:
            q["Period"] = config.period
        out.append(q)
    return out


def classify(exc: Exception, gate: str) -> TemporaryError | PermanentError:
    """A GetMetricData failure as temporary (throttling, 5xx, network) or permanent."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        text = f"gate {gate}: CloudWatch GetMetricData: {code}: {error.get('Message', '')}"
        if code in _TEMPORARY_CODES or status >= 500:
            return TemporaryError(text)
        return PermanentError(text + " (check apps[].gates[].queries and the IAM permissions)")
    if isinstance(exc, NoCredentialsError):
        return PermanentError(f"gate {gate}: no AWS credentials for CloudWatch")
    return TemporaryError(f"gate {gate}: CloudWatch GetMetricData: {exc}")


class CloudWatchGate:
    """One ``type = "cloudwatch"`` gate of an app."""

    def __init__(
        self, config: GateConfig, session: AioSession, aws: AwsConfig, region: str | None
    ) -> None:
        assert config.cloudwatch is not None  # the configuration checks it
        self.name = config.name
        self.config = config.cloudwatch
        self.session = session
        self.aws = aws
        self.region = region
        self.queries = _queries(config.cloudwatch)

    async def check(self, context: GateContext) -> GateResult:
        c = self.config
        end = datetime.fromtimestamp(context.now, UTC) if context.now else datetime.now(UTC)
        try:
            kwargs = client_kwargs(self.aws, self.region)
            async with self.session.create_client("cloudwatch", **kwargs) as cloudwatch:
                out = await cloudwatch.get_metric_data(
                    MetricDataQueries=self.queries,
                    StartTime=end - timedelta(seconds=c.lookback),
                    EndTime=end,
                    ScanBy="TimestampDescending",
                )
        except (ClientError, BotoCoreError) as exc:
            raise classify(exc, self.name) from exc
        return judge(c, out.get("MetricDataResults", []))


def judge(config: CloudWatchGateConfig, results: list[dict[str, Any]]) -> GateResult:
    """The check's result from GetMetricData's ``MetricDataResults`` (newest value first)."""
    breached, sign = COMPARISONS[config.comparison]
    values: list[tuple[str, float]] = []
    failing: list[str] = []
    empty: list[str] = []
    for r in results:
        label = str(r.get("Id") or r.get("Label") or "?")
        series = r.get("Values") or []
        if not series:
            empty.append(label)
            continue
        stamps = r.get("Timestamps") or []
        newest = float(max(zip(stamps, series, strict=False))[1]) if stamps else float(series[0])
        values.append((label, newest))
        if breached(newest, config.threshold):
            failing.append(f"{label} = {newest:g} {sign} {config.threshold:g}")
    if failing:
        return GateResult(False, "query " + ", ".join(failing), tuple(values))
    shown = ", ".join(f"{k} = {v:g}" for k, v in values) or "no data"
    if empty and values:
        shown += f" (no data: {', '.join(empty)})"
    return GateResult(True, shown, tuple(values))
