"""The same cases against both state stores: the directory and DynamoDB (local endpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from gitopsd.local_aws.testing import LocalAws
from gitopsd.statestore import (
    Entry,
    StateConflict,
    StateRejected,
    StateStore,
    StateUnavailable,
    update,
)
from gitopsd.statestore.dirstore import DirStore
from gitopsd.statestore.dynamodb import DynamoDbStore

from .conftest import aws_config
from .table import create_state_table

pytestmark = pytest.mark.anyio


async def test_put_then_get_returns_the_document_and_its_version(store: StateStore) -> None:
    assert await store.get("agent", "web") is None
    assert await store.put("agent", "web", {"suspended": True, "n": 1.5}, expect=0) == 1
    assert await store.get("agent", "web") == Entry({"suspended": True, "n": 1.5}, 1)
    assert await store.put("agent", "web", {"suspended": False}, expect=1) == 2
    assert await store.get("agent", "web") == Entry({"suspended": False}, 2)


async def test_a_write_at_a_stale_version_is_a_conflict_and_changes_nothing(
    store: StateStore,
) -> None:
    await store.put("agent", "web", {"a": 1}, expect=0)
    with pytest.raises(StateConflict) as first:
        await store.put("agent", "web", {"a": 2}, expect=0)  # "must not exist yet"
    assert "agent/web" in str(first.value)
    await store.put("agent", "web", {"a": 3}, expect=1)
    with pytest.raises(StateConflict):
        await store.put("agent", "web", {"a": 4}, expect=1)  # another writer was first
    with pytest.raises(StateConflict):
        await store.put("agent", "other", {"a": 5}, expect=3)  # no such document
    assert await store.get("agent", "web") == Entry({"a": 3}, 2)
    assert await store.get("agent", "other") is None


async def test_two_concurrent_updaters_both_land(store: StateStore) -> None:
    async def add(name: str) -> None:
        for i in range(5):
            field = f"{name}{i}"
            await update(store, "alerts", "c", lambda d: {**d, field: True})  # noqa: B023

    async with anyio.create_task_group() as tg:
        tg.start_soon(add, "a")
        tg.start_soon(add, "b")
    entry = await store.get("alerts", "c")
    assert entry is not None
    assert set(entry.value) == {f"{n}{i}" for n in "ab" for i in range(5)}
    assert entry.version == 10


async def test_update_writes_nothing_when_the_document_does_not_change(store: StateStore) -> None:
    first = await update(store, "agent", "web", lambda d: {**d, "suspended": True})
    again = await update(store, "agent", "web", lambda d: {**d, "suspended": True})
    assert first.version == again.version == 1
    assert (await update(store, "agent", "web", lambda d: None)).version == 1


async def test_delete_is_conditional_when_asked_and_missing_is_fine(store: StateStore) -> None:
    await store.put("webhook-deliveries", "ci/1", {"at": 1.0}, expect=0)
    with pytest.raises(StateConflict):
        await store.delete("webhook-deliveries", "ci/1", expect=7)
    await store.delete("webhook-deliveries", "ci/1", expect=1)
    assert await store.get("webhook-deliveries", "ci/1") is None
    await store.delete("webhook-deliveries", "ci/1")  # already gone
    await store.delete("webhook-deliveries", "never")
    assert await store.put("webhook-deliveries", "ci/1", {"at": 2.0}, expect=0) == 1


async def test_list_returns_one_namespace_with_any_key(store: StateStore) -> None:
    keys = ["web", "ci/abc-123", "a b%c", ".lock", "..", "é"]
    for k in keys:
        await store.put("ns1", k, {"k": k}, expect=0)
    await store.put("ns2", "web", {"other": True}, expect=0)
    listed = await store.list("ns1")
    assert set(listed) == set(keys)
    assert all(listed[k] == Entry({"k": k}, 1) for k in keys)
    assert await store.list("empty") == {}


async def test_a_damaged_document_reads_as_empty_and_the_next_write_replaces_it(
    store: StateStore, request: pytest.FixtureRequest
) -> None:
    await store.put("agent", "web", {"suspended": True}, expect=0)
    if isinstance(store, DirStore):
        path = store.root / "agent" / "web.json"
        path.write_text('{"version": 1, "value": {"suspe')  # torn by a crash or a bad copy
    else:
        assert isinstance(store, DynamoDbStore)
        aws: LocalAws = request.getfixturevalue("state_aws")
        aws.boto3_client("dynamodb").put_item(
            TableName=store.table,
            Item={"ns": {"S": "agent"}, "key": {"S": "web"}, "ver": {"N": "1"}, "doc": {"S": "{"}},
        )
    entry = await store.get("agent", "web")
    assert entry is not None
    assert entry.damaged
    assert entry.value == {}
    assert (await store.list("agent"))["web"].damaged
    await update(store, "agent", "web", lambda d: {**d, "suspended": True})
    stored = await store.get("agent", "web")
    assert stored is not None
    assert stored.value == {"suspended": True}
    assert not stored.damaged


async def test_documents_must_be_json(store: StateStore) -> None:
    with pytest.raises(ValueError, match="agent/web"):
        await store.put("agent", "web", {"x": object()}, expect=0)
    with pytest.raises(ValueError, match="larger than"):
        await store.put("agent", "web", {"x": "y" * 70_000}, expect=0)
    assert await store.get("agent", "web") is None


async def test_a_missing_table_is_a_permanent_error_naming_the_key_and_the_setup(
    state_aws: LocalAws, aws_env: None
) -> None:
    state_aws.clear_calls()
    async with DynamoDbStore("no-such-table", aws_config(state_aws, max_attempts=1)) as ddb:
        with pytest.raises(StateRejected) as err:
            await ddb.get("agent", "web")
    text = str(err.value)
    assert "'no-such-table' ([state].table) does not exist" in text
    assert "docs/state.md" in text
    assert "never creates it" in text
    assert state_aws.calls() == ["GetItem"]  # never created, nor retried


async def test_throttling_is_retried_and_then_temporary(state_aws: LocalAws, aws_env: None) -> None:
    create_state_table(state_aws, "throttled")
    state_aws.arm_fault("GetItem", "ProvisionedThroughputExceededException", count=1)
    async with DynamoDbStore("throttled", aws_config(state_aws, max_attempts=3)) as ddb:
        assert await ddb.get("agent", "web") is None  # the second attempt answered
        state_aws.arm_fault("GetItem", "ProvisionedThroughputExceededException", count=3)
        with pytest.raises(StateUnavailable) as err:
            await ddb.get("agent", "web")
    assert "ProvisionedThroughputExceededException" in str(err.value)
    state_aws.clear_faults()


async def test_a_lost_answer_to_a_conditional_put_is_not_a_false_conflict(
    state_aws: LocalAws, aws_env: None
) -> None:
    create_state_table(state_aws, "lost")
    # The write is made, its answer replaced by a 500: the retry then fails its condition.
    state_aws.arm_fault("PutItem", "InternalServerError", count=1, phase="after")
    async with DynamoDbStore("lost", aws_config(state_aws, max_attempts=3)) as ddb:
        assert await ddb.put("agent", "web", {"suspended": True}, expect=0) == 1
        assert await ddb.get("agent", "web") == Entry({"suspended": True}, 1)
    state_aws.clear_faults()


def test_the_dir_store_file_is_plain_json(tmp_path: Path) -> None:
    store = DirStore(tmp_path)
    anyio.run(lambda: store.put("agent", "web", {"suspended": True}, expect=0))
    data = json.loads((tmp_path / "agent" / "web.json").read_text())
    assert data == {"version": 1, "value": {"suspended": True}}
