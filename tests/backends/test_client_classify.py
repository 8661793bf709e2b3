"""classify: botocore and network failures -> temporary or permanent, with a useful message.

Pure: every case is built from botocore's exception classes, no network.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from gitopsd.backends.ecs.client import HINTS, RETRYABLE_CODES, classify
from gitopsd.errors import BackendRejected, BackendUnavailable, PermanentError, TemporaryError

CONCURRENT = "Too many concurrent attempts to create a new revision of the specified family."


def client_error(
    code: str, message: str, status: int = 400, op: str = "RegisterTaskDefinition"
) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, op)


@pytest.mark.parametrize("code", sorted(RETRYABLE_CODES))
def test_throttling_and_server_codes_are_temporary(code: str) -> None:
    err = classify("DescribeServices", client_error(code, "slow down"))
    assert isinstance(err, BackendUnavailable)
    assert isinstance(err, TemporaryError)
    assert str(err) == f"ECS DescribeServices failed: {code}: slow down"


def test_any_5xx_is_temporary() -> None:
    err = classify("UpdateService", client_error("SomethingNew", "boom", status=503))
    assert isinstance(err, BackendUnavailable)


def test_concurrent_revisions_of_a_family_are_temporary() -> None:
    err = classify("RegisterTaskDefinition", client_error("ClientException", CONCURRENT))
    assert isinstance(err, BackendUnavailable)
    assert str(err) == f"ECS RegisterTaskDefinition failed: ClientException: {CONCURRENT}"
    # Matched on the message, whatever its case or surrounding text.
    shouted = client_error("ClientException", "Error: " + CONCURRENT.upper())
    assert isinstance(classify("RegisterTaskDefinition", shouted), BackendUnavailable)


def test_other_client_exceptions_are_permanent() -> None:
    err = classify(
        "RegisterTaskDefinition",
        client_error("ClientException", "Container.image should not be null or empty."),
    )
    assert isinstance(err, BackendRejected)
    assert isinstance(err, PermanentError)
    # The retryable message under another code is not retryable: the code decides first.
    other = classify(
        "RegisterTaskDefinition", client_error("InvalidParameterException", CONCURRENT)
    )
    assert isinstance(other, BackendRejected)


def test_cluster_not_found_has_a_hint() -> None:
    err = classify(
        "DescribeServices", client_error("ClusterNotFoundException", "Cluster not found.")
    )
    assert isinstance(err, BackendRejected)
    assert str(err) == (
        "ECS DescribeServices failed: ClusterNotFoundException: Cluster not found. "
        "(check apps[].cluster and the region: the cluster must exist in that account "
        "and region)"
    )


@pytest.mark.parametrize("code", ["AccessDeniedException", "UnrecognizedClientException"])
def test_credential_failures_have_a_hint(code: str) -> None:
    err = classify("ListServices", client_error(code, "no"))
    assert isinstance(err, BackendRejected)
    assert str(err).endswith("(check the AWS credentials and IAM permissions gitopsd runs with)")
    assert code in HINTS


def test_message_falls_back_to_the_exception_text() -> None:
    exc = ClientError({"Error": {"Code": "InvalidParameterException"}}, "CreateService")
    err = classify("CreateService", exc)
    assert isinstance(err, BackendRejected)
    assert "InvalidParameterException" in str(err)


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="https://ecs.eu-west-1.amazonaws.com"),
        ConnectionClosedError(endpoint_url="https://ecs.eu-west-1.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://ecs.eu-west-1.amazonaws.com"),
        TimeoutError("timed out"),
        ConnectionResetError("reset by peer"),
    ],
    ids=type,
)
def test_unreachable_endpoint_is_temporary(exc: BaseException) -> None:
    err = classify("DescribeServices", exc)
    assert isinstance(err, BackendUnavailable)
    assert str(err).startswith("ECS DescribeServices failed: ")
    # Only a connection never made is known not to have reached the server.
    assert err.maybe_applied is not isinstance(exc, EndpointConnectionError)


@pytest.mark.parametrize(
    ("code", "status", "maybe"),
    [
        ("ThrottlingException", 400, False),
        ("ServerException", 500, True),
        ("ServiceUnavailableException", 503, True),
    ],
)
def test_a_lost_answer_may_have_been_applied(code: str, status: int, maybe: bool) -> None:
    exc = ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "RegisterTaskDefinition",
    )
    err = classify("RegisterTaskDefinition", exc)
    assert isinstance(err, BackendUnavailable)
    assert err.maybe_applied is maybe


@pytest.mark.parametrize(
    "exc",
    [
        HTTPClientError(error="Server disconnected"),
        ResponseStreamingError(error="Response payload is not completed"),
    ],
    ids=type,
)
def test_generic_transport_failures_are_temporary(exc: BotoCoreError) -> None:
    err = classify("DescribeServices", exc)
    assert isinstance(err, BackendUnavailable)
    assert str(err) == f"ECS DescribeServices failed: {exc}"


def test_configuration_problems_are_permanent_with_advice() -> None:
    region = classify("client setup", NoRegionError())
    assert isinstance(region, BackendRejected)
    assert "[aws].region" in str(region)
    creds = classify("DescribeServices", NoCredentialsError())
    assert isinstance(creds, BackendRejected)
    assert "[aws].profile" in str(creds)


def test_other_failures_are_permanent() -> None:
    invalid = classify("UpdateService", ParamValidationError(report="Unknown parameter foo"))
    assert isinstance(invalid, BackendRejected)
    assert "Unknown parameter foo" in str(invalid)
    bug = classify("UpdateService", KeyError("service"))
    assert isinstance(bug, BackendRejected)
    assert str(bug) == "ECS UpdateService failed: KeyError: 'service'"


def test_classify_is_pure() -> None:
    exc = client_error("ClientException", CONCURRENT)
    first, second = classify("RegisterTaskDefinition", exc), classify("RegisterTaskDefinition", exc)
    assert type(first) is type(second)
    assert str(first) == str(second)
    assert exc.response["Error"]["Message"] == CONCURRENT
