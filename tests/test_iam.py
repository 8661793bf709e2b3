"""The IAM policy matches the AWS calls in the code: nothing missing, nothing extra, no `*` action.

The collector reads the package's source (gitopsd.iam.collect); these tests fail
when a call is added or removed without regenerating config/iam/*.json
(``python -m gitopsd.iam --write``), when the collector meets a call it cannot
read, and when a document breaks IAM's grammar.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any, get_args

import pytest

from gitopsd.backends.ecs.applier import EcsWrite
from gitopsd.backends.ecs.client import EcsOperation
from gitopsd.cli import main
from gitopsd.iam.__main__ import FILES, expected
from gitopsd.iam.__main__ import main as iam_main
from gitopsd.iam.actions import ACTIONS, actions_for
from gitopsd.iam.collect import Collected, Operation, collect, format_calls
from gitopsd.iam.policy import Target, build_policy, policy_actions

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = "regenerate with: .venv/bin/python -m gitopsd.iam --write"
WRITE_WORDS = (
    "Create",
    "Update",
    "Delete",
    "Put",
    "Register",
    "Deregister",
    "Tag",
    "Untag",
    "Pass",
)
ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9]+$")
STATEMENT_KEYS = {"Sid", "Effect", "Action", "Resource", "Condition"}
OPERATORS = {"StringEquals", "StringLike", "ArnEquals", "ArnLike", "Null", "Bool"}


@pytest.fixture(scope="module")
def found() -> Collected:
    return collect()


def load(rel: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / rel).read_text(encoding="utf-8"))
    return data


FULL = "config/iam/gitopsd-policy.json"
READ_ONLY = "config/iam/gitopsd-readonly-policy.json"


# -- the collector ----------------------------------------------------------------------


def test_the_collector_reads_every_aws_call(found: Collected) -> None:
    assert not found.problems, "calls gitopsd.iam cannot read:\n  " + "\n  ".join(found.problems)
    services = {op.service for op in found.operations}
    assert {"ecs"} <= services, format_calls(found)


def test_every_ecs_operation_typed_for_the_client_is_called(found: Collected) -> None:
    called = {op.name for op in found.operations if op.service == "ecs"}
    declared = set(get_args(EcsOperation))
    assert declared == called, (
        f"EcsOperation (gitopsd/backends/ecs/client.py) lists {sorted(declared - called)} "
        f"that no code calls, and misses {sorted(called - declared)}"
    )
    assert set(get_args(EcsWrite)) <= declared


def test_every_operation_has_known_actions_and_every_known_one_is_called(
    found: Collected,
) -> None:
    unknown = found.operations - ACTIONS.keys()
    unused = ACTIONS.keys() - found.operations
    assert not unknown, (
        "operations the code calls with no IAM actions in gitopsd/iam/actions.py:\n"
        + format_calls(found, unknown)
    )
    assert not unused, (
        "gitopsd/iam/actions.py grants operations the code never calls (remove them): "
        + ", ".join(map(str, sorted(unused)))
    )


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / "gitopsd" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return tmp_path


def test_the_collector_finds_literal_typed_and_client_method_calls(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "backends/ecs/writes.py": """
                from dataclasses import dataclass
                from typing import Literal

                Kind = Literal["TagResource", "UntagResource"]

                @dataclass
                class Req:
                    op: Kind

                async def send(client, req: Req, other: Kind) -> None:
                    await client.call("DescribeServices", cluster="c", services=["s"])
                    await client.call(req.op)
                    await client.call(other)
                    client.get_paginator("list_services")
            """,
            "store.py": """
                async def go(session) -> None:
                    async with session.create_client("dynamodb") as ddb:
                        await ddb.put_item(TableName="t", Item={})
                        send = ddb.delete_item
                        await send(TableName="t", Key={})
                        await getattr(ddb, "query")(TableName="t")
            """,
            "local_aws/fake.py": """
                async def go(session) -> None:
                    async with session.create_client("s3") as s3:
                        await s3.put_object()
            """,
        },
    )
    out = collect(root)
    assert out.problems == []
    assert out.operations == {
        Operation("ecs", "DescribeServices"),
        Operation("ecs", "TagResource"),
        Operation("ecs", "UntagResource"),
        Operation("ecs", "ListServices"),
        Operation("dynamodb", "PutItem"),
        Operation("dynamodb", "DeleteItem"),
        Operation("dynamodb", "Query"),
    }
    assert out.calls[Operation("dynamodb", "PutItem")] == ["gitopsd/store.py:4"]


@pytest.mark.parametrize(
    ("rel", "source", "problem"),
    [
        (
            "backends/ecs/new.py",
            "async def f(client, op: str) -> None:\n    await client.call(op)\n",
            "neither a string literal nor annotated with a Literal",
        ),
        (
            "backends/ecs/new.py",
            "async def f(client, ops) -> None:\n    await client.call(ops[0])\n",
            "neither a string literal nor annotated with a Literal",
        ),
        (
            "backends/ecs/new.py",
            "async def f(client) -> None:\n    await client.call('NoSuchOperation')\n",
            "ecs has no operation 'NoSuchOperation'",
        ),
        (
            "engine/new.py",
            "async def f(client) -> None:\n    await client.call('ListServices')\n",
            "in a module that does not use EcsClient",
        ),
        (
            "new.py",
            "def f(session, name: str) -> None:\n    session.create_client(name)\n",
            "not a string literal",
        ),
        ("new.py", "def f(session) -> None:\n    session.create_client('s3')\n", "does not know"),
        (
            "new.py",
            "async def f(s, op: str) -> None:\n"
            "    async with s.create_client('dynamodb') as c:\n"
            "        await getattr(c, op)()\n",
            "getattr() with a computed name",
        ),
        (
            "new.py",
            "async def f(table) -> None:\n    await table.put_item(Item={})\n",
            "named like an AWS operation (dynamodb:PutItem) in a module with no client",
        ),
    ],
)
def test_a_call_the_collector_cannot_see_is_a_problem(
    tmp_path: Path, rel: str, source: str, problem: str
) -> None:
    out = collect(_package(tmp_path, {rel: source}))
    assert any(problem in p for p in out.problems), out.problems
    assert out.operations == frozenset()


# -- the documents ----------------------------------------------------------------------


def test_the_policy_grants_exactly_the_actions_the_code_needs(found: Collected) -> None:
    needed = {a.name for a in actions_for(found.operations)}
    granted = policy_actions(load(FULL))
    missing, extra = needed - granted, granted - needed
    assert not missing, f"{FULL} misses {sorted(missing)} that the code calls; {REGENERATE}"
    assert not extra, f"{FULL} grants {sorted(extra)} that the code never calls; {REGENERATE}"


def test_the_checked_in_documents_are_what_the_generator_makes() -> None:
    for rel, text in expected().items():
        assert (ROOT / rel).read_text(encoding="utf-8") == text, f"{rel} is stale; {REGENERATE}"
    assert iam_main(["--check"]) == 0


def test_the_read_only_policy_is_a_subset_with_no_write() -> None:
    full, read_only = policy_actions(load(FULL)), policy_actions(load(READ_ONLY))
    assert read_only < full
    writes = sorted(a for a in read_only if a.split(":")[1].startswith(WRITE_WORDS))
    assert not writes, f"{READ_ONLY} grants writes: {writes}"
    by_name = {a.name: a for acts in ACTIONS.values() for a in acts}
    assert all(by_name[a].access.read_only for a in read_only)
    assert {"ecs:DescribeServices", "ecs:DescribeTaskDefinition"} <= read_only


@pytest.fixture(scope="module")
def documents(found: Collected) -> list[dict[str, Any]]:
    """The checked-in documents and both variants scoped to a made-up account."""
    scoped = Target(
        account="111122223333",
        clusters=(("eu-west-1", "prod"), ("us-east-1", "dr")),
        families=("web-*",),
        roles=("arn:aws:iam::111122223333:role/web-task",),
        kms_key="arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        operations=found.operations,
    )
    return [
        load(FULL),
        load(READ_ONLY),
        build_policy(scoped),
        build_policy(scoped, read_only=True),
    ]


def test_no_action_has_a_wildcard(documents: list[dict[str, Any]]) -> None:
    for doc in documents:
        wild = sorted(a for a in policy_actions(doc) if "*" in a or "?" in a)
        assert not wild, wild
        assert all("NotAction" not in s for s in doc["Statement"])


@pytest.mark.parametrize("index", range(4))
def test_each_document_is_valid_iam_policy_grammar(
    documents: list[dict[str, Any]], index: int
) -> None:
    doc = documents[index]
    assert set(doc) == {"Version", "Statement"}
    assert doc["Version"] == "2012-10-17"
    assert isinstance(doc["Statement"], list)
    assert doc["Statement"]
    sids = [s["Sid"] for s in doc["Statement"]]
    assert len(sids) == len(set(sids))
    assert all(re.fullmatch(r"[A-Za-z0-9]+", s) for s in sids)
    for statement in doc["Statement"]:
        assert set(statement) <= STATEMENT_KEYS, statement
        assert {"Effect", "Action", "Resource"} <= set(statement)
        assert statement["Effect"] == "Allow"
        actions = statement["Action"]
        assert isinstance(actions, list)
        assert actions == sorted(set(actions))
        assert all(ACTION.match(a) for a in actions), actions
        resources = statement["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        assert resources
        assert all(r == "*" or r.startswith("arn:") for r in resources)
        for operator, keys in statement.get("Condition", {}).items():
            assert operator in OPERATORS
            assert isinstance(keys, dict)
            assert keys
            for key, value in keys.items():
                assert re.fullmatch(r"[a-zA-Z0-9-]+:[A-Za-z0-9:/_-]+", key), key
                assert isinstance(value, str | list)


def test_pass_role_and_deletes_are_scoped() -> None:
    statements = {s["Sid"]: s for s in load(FULL)["Statement"]}
    passing = [s for s in statements.values() if "iam:PassRole" in s["Action"]]
    assert len(passing) == 1
    assert passing[0]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    assert "*" not in passing[0]["Resource"]
    for statement in statements.values():
        if statement["Resource"] == "*":  # only actions without resource-level permissions
            assert set(statement["Action"]) <= {
                "sts:GetCallerIdentity",
                "ssm:DescribeParameters",
                "ecs:ListServices",
                "ecs:DescribeTaskDefinition",
                "ecs:ListTaskDefinitions",
                "ecs:DeregisterTaskDefinition",
                "cloudwatch:GetMetricData",  # gates: no resource-level permissions
                "cloudwatch:DescribeAlarms",  # composite alarms need "*"
            }
    delete = next(s for s in statements.values() if "ecs:DeleteService" in s["Action"])
    assert delete["Condition"] == {"Null": {"aws:ResourceTag/gitopsd:app": "false"}}


# -- gitopsd iam-policy -----------------------------------------------------------------


def test_iam_policy_takes_clusters_regions_and_table_from_a_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "gitopsd.toml"
    cfg.write_text(
        textwrap.dedent(
            """
            [aws]
            region = "eu-west-1"
            [state]
            backend = "dynamodb"
            table = "ops-state"
            [[sources]]
            name = "s"
            url = "git://127.0.0.1/x.git"
            [[apps]]
            name = "web"
            source = "s"
            cluster = "prod"
            [[apps]]
            name = "dr"
            source = "s"
            cluster = "arn:aws:ecs:us-west-2:111122223333:cluster/standby"
            """
        ),
        encoding="utf-8",
    )
    code = main(
        [
            "iam-policy",
            "-c",
            str(cfg),
            "--account",
            "111122223333",
            "--pass-role",
            "arn:aws:iam::111122223333:role/web-task",
            "--kms-key",
            "arn:aws:kms:eu-west-1:111122223333:key/k",
        ]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    text = json.dumps(doc)
    statements = {s["Sid"]: s for s in doc["Statement"]}
    assert statements["EcsListServices"]["Condition"]["ArnEquals"]["ecs:cluster"] == [
        "arn:aws:ecs:eu-west-1:111122223333:cluster/prod",
        "arn:aws:ecs:us-west-2:111122223333:cluster/standby",
    ]
    assert statements["StateTable"]["Resource"] == (
        "arn:aws:dynamodb:eu-west-1:111122223333:table/ops-state"
    )
    assert statements["PassDeclaredTaskRoles"]["Resource"] == [
        "arn:aws:iam::111122223333:role/web-task"
    ]
    assert statements["DecryptConfigParameter"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "ssm.eu-west-1.amazonaws.com"}
    }
    assert "ACCOUNT_ID" not in text
    assert "REGION" not in text
    assert "CLUSTER" not in text


def test_iam_policy_without_a_table_or_ssm_and_read_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["iam-policy", "--no-table", "--no-ssm", "--cluster", "prod"]) == 0
    full = policy_actions(json.loads(capsys.readouterr().out))
    assert not any(a.startswith(("dynamodb:", "kms:")) for a in full)
    assert "ssm:GetParameter" not in full  # ssm:DescribeParameters checks secrets[].valueFrom
    assert "ecs:RegisterTaskDefinition" in full
    assert main(["iam-policy", "--read-only"]) == 0
    read_only = json.loads(capsys.readouterr().out)
    assert read_only == load(READ_ONLY)


def test_write_regenerates_a_missing_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gitopsd.iam.__main__ as entry

    monkeypatch.setattr(entry, "package_root", lambda: tmp_path)
    assert entry.main(["--check"]) == 1
    assert entry.main(["--write"]) == 0
    assert entry.main(["--check"]) == 0
    for rel in FILES:
        assert (tmp_path / rel).read_text(encoding="utf-8") == (ROOT / rel).read_text(
            encoding="utf-8"
        )
