"""The state table as docs/state.md creates it, for tests (the agent never creates it)."""

from __future__ import annotations

from gitopsd.local_aws.testing import LocalAws


def create_state_table(aws: LocalAws, name: str) -> None:
    """The table as docs/state.md creates it (``aws dynamodb create-table ...``)."""
    aws.boto3_client("dynamodb").create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": "ns", "AttributeType": "S"},
            {"AttributeName": "key", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "ns", "KeyType": "HASH"},
            {"AttributeName": "key", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
