"""Fuzzing overlays: any patch (RFC 7396 merge or RFC 6902 operations) gives a result or problems.

Base documents and patch documents go through the real loader as YAML, then
:func:`apply_overlays`. Paths and ``from`` pointers are drawn from the target's
own keys and indices, RFC 6901 escapes and junk (``/..``, ``-1``, ``01``, huge
indices), ops from the six of RFC 6902 and others. Whatever the patch, the
result is located problems or documents of plain data whose every origin
points into a file that was read.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from gitopsd.backends.ecs.schema import ecs_schema
from gitopsd.manifests.loader import load_manifests
from gitopsd.manifests.overlay import JSON_PATCH_OPS, apply_overlays
from gitopsd.pointer import value_at

from .support import FUZZ, JSON_DATA, KEYS, SERVICE, TASK_DEFINITION, assert_plain_data, time_limit

_TOKENS = st.sampled_from(
    [
        "containerDefinitions",
        "0",
        "1",
        "-",
        "image",
        "environment",
        "name",
        "value",
        "kind",
        "family",
        "serviceName",
        "desiredCount",
        "portMappings",
        "containerPort",
        "",
        "~0",
        "~1",
        "~",
        "~2",
        "..",
        "-1",
        "01",
        "99999999999999999999",
        "1e3",
        " 0",
    ]
) | st.text(max_size=4)

_POINTERS = st.lists(_TOKENS, max_size=5).map(
    lambda ts: "".join(f"/{t}" for t in ts)
) | st.sampled_from(["", "/", "//", "a", "#/a", "/containerDefinitions/0/image"])

_OPS = st.fixed_dictionaries(
    {"op": st.sampled_from([*JSON_PATCH_OPS, "merge", "", "ADD"]) | JSON_DATA},
    optional={
        "path": _POINTERS | JSON_DATA,
        "from": _POINTERS | JSON_DATA,
        "value": JSON_DATA,
        "extra": JSON_DATA,
    },
)


def _pointers(value: Any, prefix: str = "") -> list[str]:
    """Every JSON pointer into ``value``, ``""`` included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _pointers(item, f"{prefix}/{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _pointers(item, f"{prefix}/{i}")
    return found


@st.composite
def _likely_ops(draw: st.DrawFn, target: dict[str, Any]) -> dict[str, Any]:
    """An operation on pointers that exist in ``target``: most of them apply."""
    existing = [p for p in _pointers(target) if p and p != "/kind"]
    op = draw(st.sampled_from(JSON_PATCH_OPS))
    path = draw(st.sampled_from(existing))
    if op == "add":
        path = draw(st.sampled_from([path, f"{path}/-", f"{path}/0", f"{path}/new"]))
    out: dict[str, Any] = {"op": op, "path": path}
    if op in ("add", "replace", "test"):
        out["value"] = draw(JSON_DATA | st.sampled_from([value_at(target, p) for p in existing]))
    if op in ("move", "copy"):
        out["from"] = draw(st.sampled_from(existing))
    return out


_TARGET = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["Service", "TaskDefinition", "Nope"]) | JSON_DATA,
        "name": st.sampled_from(["web", "api"]) | JSON_DATA,
        "other": JSON_DATA,
    },
)


@st.composite
def _merge_patches(draw: st.DrawFn) -> Any:
    """Merge patches shaped like the documents, with ``null`` deletions and junk."""
    base = draw(st.sampled_from([TASK_DEFINITION, SERVICE]))
    patch: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(sorted(base)) | KEYS, max_size=4)):
        patch[key] = draw(st.none() | JSON_DATA)
    return patch


_PATCH_DOCS = st.fixed_dictionaries(
    {"target": _TARGET | JSON_DATA},
    optional={
        "mergePatch": _merge_patches() | JSON_DATA,
        "jsonPatch": st.lists(_OPS | JSON_DATA, max_size=5) | JSON_DATA,
        "kind": st.sampled_from(["Service", "TaskDefinition"]),
        "serviceName": st.just("web"),
        "junk": JSON_DATA,
    },
)


def _render(base: list[dict[str, Any]], overlays: list[list[Any]]) -> None:
    schema = ecs_schema()
    files = {"app/base.yaml": yaml.safe_dump_all(base).encode()}
    overlay_files = [
        {f"prod{i}/patch.yaml": yaml.safe_dump_all(docs, allow_unicode=True).encode()}
        for i, docs in enumerate(overlays)
    ]
    with time_limit():
        docs, problems = load_manifests(files, schema)
        docs, found = apply_overlays(docs, overlay_files, schema)
    problems += found
    read = {"app/base.yaml"} | {name for f in overlay_files for name in f}
    for problem in problems:
        assert problem.file in read, problem
        assert problem.message.strip(), problem
    for doc in docs:
        assert isinstance(doc.data, dict)
        if not problems:
            assert_plain_data(doc.data)
        for pointer, origin in doc.origins.items():
            assert origin.file in read, (pointer, origin)
            value_at(doc.data, pointer)  # every located pointer exists in the patched data


@FUZZ
@given(
    base=st.lists(st.sampled_from([TASK_DEFINITION, SERVICE]), min_size=1, max_size=2),
    overlays=st.lists(st.lists(_PATCH_DOCS | JSON_DATA, max_size=3), min_size=1, max_size=2),
)
@example(
    base=[TASK_DEFINITION],
    overlays=[
        [
            {
                "target": {"kind": "TaskDefinition", "name": "web"},
                "jsonPatch": [
                    {
                        "op": "move",
                        "from": "/containerDefinitions/0",
                        "path": "/containerDefinitions/0/x",
                    }
                ],
            }
        ]
    ],
)
@example(
    base=[SERVICE],
    overlays=[
        [
            {
                "target": {"kind": "Service", "name": "web"},
                "jsonPatch": [{"op": "add", "path": "/desiredCount/x", "value": 1}],
            }
        ]
    ],
)
def test_any_patch_gives_a_result_or_located_problems(
    base: list[dict[str, Any]], overlays: list[list[Any]]
) -> None:
    _render(base, overlays)


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["TaskDefinition", "Service"]))
def test_json_patch_operations_on_a_real_target(data: st.DataObject, kind: str) -> None:
    """Operations aimed at an existing document: the patch applies or says why not."""
    base = TASK_DEFINITION if kind == "TaskDefinition" else SERVICE
    ops = data.draw(st.lists(_likely_ops(base) | _OPS, min_size=1, max_size=6))
    patch = {"target": {"kind": kind, "name": "web"}, "jsonPatch": ops}
    _render([base], [[patch]])


@FUZZ
@given(patch=_merge_patches(), kind=st.sampled_from(["TaskDefinition", "Service"]))
def test_merge_patches_on_a_real_target(patch: dict[str, Any], kind: str) -> None:
    base = TASK_DEFINITION if kind == "TaskDefinition" else SERVICE
    _render([base], [[{"target": {"kind": kind, "name": "web"}, "mergePatch": patch}]])
