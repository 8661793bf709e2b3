"""The cloudwatch gate's judgement of GetMetricData answers, and how its errors classify."""

from __future__ import annotations

from datetime import UTC, datetime

from botocore.exceptions import ClientError, EndpointConnectionError

from gitopsd.config import CloudWatchGateConfig
from gitopsd.errors import PermanentError, TemporaryError
from gitopsd.gates.cloudwatch import classify, judge

T = datetime(2026, 1, 1, tzinfo=UTC)
QUERY = {"Id": "e", "Expression": "1"}


def config(comparison: str, threshold: float = 5.0) -> CloudWatchGateConfig:
    return CloudWatchGateConfig.model_validate(
        {"queries": [QUERY], "threshold": threshold, "comparison": comparison}
    )


def series(id_: str, *points: tuple[int, float]) -> dict[str, object]:
    return {
        "Id": id_,
        "Timestamps": [T.replace(minute=m) for m, _ in points],
        "Values": [v for _, v in points],
    }


def test_the_newest_value_is_compared_like_an_alarm() -> None:
    answer = [series("e", (1, 100.0), (5, 6.0), (3, 0.0))]  # newest: minute 5
    result = judge(config("GreaterThanThreshold"), answer)
    assert not result.ok
    assert result.message == "query e = 6 > 5"
    assert result.values == (("e", 6.0),)
    assert judge(config("GreaterThanThreshold", 6.0), answer).ok
    assert not judge(config("GreaterThanOrEqualToThreshold", 6.0), answer).ok
    assert not judge(config("LessThanThreshold", 7.0), answer).ok
    assert judge(config("LessThanOrEqualToThreshold", 5.0), answer).ok


def test_no_data_does_not_fail_a_check() -> None:
    result = judge(config("GreaterThanThreshold"), [{"Id": "e", "Values": [], "Timestamps": []}])
    assert result.ok
    assert result.message == "no data"
    mixed = judge(config("LessThanThreshold"), [series("a", (1, 9.0)), series("b")])
    assert mixed.ok
    assert mixed.message == "a = 9 (no data: b)"


def error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetMetricData",
    )


def test_throttling_and_server_errors_are_temporary_a_bad_query_permanent() -> None:
    assert isinstance(classify(error("Throttling", 400), "g"), TemporaryError)
    assert isinstance(classify(error("InternalServiceError", 500), "g"), TemporaryError)
    assert isinstance(
        classify(EndpointConnectionError(endpoint_url="http://x"), "g"), TemporaryError
    )
    bad = classify(error("InvalidParameterValue", 400), "g")
    assert isinstance(bad, PermanentError)
    assert str(bad).startswith("gate g: CloudWatch GetMetricData: InvalidParameterValue: m")
