"""Fuzzing the manifest loader: any bytes give documents and located problems, nothing else.

YAML and JSON text from junk bytes, token soup and hostile shapes (alias bombs,
deep nesting, huge scalars, Python tags, recursive aliases) must come back from
:func:`parse_file` as plain data or as problems naming the file and a line in
it, quickly and within the loader's caps (``MAX_NODES``, ``MAX_DEPTH``, the
file size cap). See tests/fuzz/support.py for how to run longer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from gitopsd.backends.ecs.schema import ecs_schema
from gitopsd.manifests.loader import MAX_DEPTH, MAX_NODES, LocatedDoc, check_manifest, parse_file

from .support import (
    FUZZ,
    HOSTILE,
    JSON_DATA,
    JSON_TOKENS,
    YAML_TOKENS,
    assert_located,
    assert_plain_data,
    hostile_yaml,
    manifests,
    merge_bomb,
    time_limit,
    yaml_bomb,
)

_BOM = st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"])
_NAME = st.sampled_from(["app/web.yaml", "app/web.yml", "app/web.json", "app/WEB.JSON"])


def _encode(text: str) -> bytes:
    return text.encode(
        "utf-8", "surrogatepass"
    )  # a lone surrogate becomes bytes that are not UTF-8


def _check(name: str, raw: bytes, max_file_size: int | None = None) -> list[LocatedDoc] | None:
    """Parse ``raw``; the documents when there was no problem, else None."""
    with time_limit():
        docs, problems = parse_file(name, raw, max_file_size=max_file_size)
    assert_located(problems, name, raw)
    for doc in docs:
        assert doc.file == name
        assert isinstance(doc.data, dict)
        if not problems:  # documents with problems are kept so that later checks still run
            assert_plain_data(doc.data)
        item, found = check_manifest(doc, ecs_schema())
        assert_located(found, name, raw)
        assert (item is None) == bool(found)
    return None if problems else docs


@FUZZ
@given(name=_NAME, bom=_BOM, raw=st.binary(max_size=3000))
def test_junk_bytes(name: str, bom: bytes, raw: bytes) -> None:
    _check(name, bom + raw)


@FUZZ
@given(name=_NAME, bom=_BOM, text=st.lists(YAML_TOKENS, max_size=60).map("".join))
@example(name="app/web.yaml", bom=b"", text="a: .nan\n")
@example(name="app/web.yaml", bom=b"", text="kind: Service\nx: !!float .inf\n")
@example(name="app/web.yaml", bom=b"", text="x: 1.0e999\n")
@example(name="app/web.yaml", bom=b"", text="a: &a {<<: *a}\n")
@example(name="app/web.yaml", bom=b"", text="!!int ")  # PyYAML's constructor: IndexError
@example(name="app/web.yaml", bom=b"", text="a: !!bool maybe\n")  # KeyError
@example(name="app/web.yaml", bom=b"", text="a: 0b_\n")  # an int to the resolver: ValueError
def test_yaml_token_soup(name: str, bom: bytes, text: str) -> None:
    _check(name, bom + _encode(text))


@FUZZ
@given(name=_NAME, text=st.lists(JSON_TOKENS, max_size=60).map("".join))
def test_json_token_soup(name: str, text: str) -> None:
    _check(name, _encode(text))


@FUZZ
@given(data=JSON_DATA | manifests(), style=st.sampled_from(["yaml", "flow", "json"]))
def test_dumped_data_round_trips_or_is_refused(data: object, style: str) -> None:
    """Data written out by a YAML or JSON library reads back as the library reads it, or as
    a problem (PyYAML writes some characters, such as NEL, that it then reads differently)."""
    if style == "json":
        name, raw = "app/web.json", json.dumps(data).encode()  # NaN too
    else:
        name = "app/web.yaml"
        raw = yaml.safe_dump(data, default_flow_style=style == "flow", allow_unicode=True).encode()
    docs = _check(name, raw)
    if docs is not None and isinstance(data, dict):  # the same as the libraries read it back
        assert [d.data for d in docs] == [
            json.loads(raw) if style == "json" else yaml.safe_load(raw)
        ]


@HOSTILE
@given(text=hostile_yaml(), name=st.sampled_from(["app/web.yaml", "app/web.json"]))
def test_hostile_shapes_are_refused_quickly_and_within_the_caps(text: str, name: str) -> None:
    _check(name, text.encode(), max_file_size=1024 * 1024)


_MEMORY_LIMIT = 1536 * 1024 * 1024
_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from gitopsd.manifests.loader import parse_file
from tests.fuzz.support import merge_bomb, yaml_bomb
texts = [
    yaml_bomb(10, 12),
    merge_bomb(10, 12),
    "kind: Service\\nx: " + "[" * 200_000 + "]" * 200_000,
    '{{"kind": "Service", "x": ' + "[" * 200_000 + "]" * 200_000 + "}}",
    "kind: Service\\nx: " + "{{a: " * 50_000 + "1" + "}}" * 50_000,
    "kind: Service\\nimage: '" + "x" * 1_000_000 + "'",
]
for i, text in enumerate(texts):
    name = "a.json" if text.startswith("{{") else "a.yaml"
    parse_file(name, text.encode(), max_file_size=1024 * 1024)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(peak)
"""


def test_the_worst_shapes_fit_in_bounded_memory() -> None:
    """The largest hostile files the size cap lets through parse under a hard memory limit.

    The child process cannot allocate more than 1.5 GiB of address space; an
    alias or merge bomb expanded in memory would need far more (10^12 values).
    """
    root = Path(__file__).parents[2]
    child = subprocess.run(
        [sys.executable, "-c", _CHILD.format(limit=_MEMORY_LIMIT)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert int(child.stdout) < 512 * 1024 * 1024  # the peak resident size, in bytes


@pytest.mark.parametrize(
    "text",
    [
        yaml_bomb(10, 9),
        merge_bomb(10, 9),
        yaml_bomb(2, 40),
        merge_bomb(2, 40),
        "kind: Service\nx: " + "[" * 100_000 + "]" * 100_000,
        "kind: Service\nx: " + "{a: " * 100_000 + "1" + "}" * 100_000,
        "kind: Service\n" + "".join(f"{'  ' * i}k{i}:\n" for i in range(2000)) + "  " * 2000 + "v",
    ],
    ids=[
        "laughs-10x9",
        "merge-10x9",
        "laughs-2x40",
        "merge-2x40",
        "deep-seq",
        "deep-map",
        "deep-block",
    ],
)
def test_a_yaml_bomb_is_refused_quickly(text: str) -> None:
    """A billion laughs (10^9 values once expanded) or nesting 100,000 deep is refused in seconds.

    Deep flow sequences are the slowest (about 2 s on a busy machine): PyYAML's
    scanner looks up to 1024 characters ahead for each possible key, so the cost
    stops growing with the depth.
    """
    start = time.monotonic()
    with time_limit(8):
        docs, problems = parse_file("bomb.yaml", text.encode())
    assert time.monotonic() - start < 6
    if "<<" in text:  # merge keys add keys, not values: the document is small and fine
        assert len(docs) == 1
        assert len(json.dumps(docs[0].data)) < MAX_NODES
    elif "l0" in text:
        assert docs == []
        assert [p.message for p in problems] == [
            f"document has more than {MAX_NODES} values (alias expansion?)"
        ]
    else:
        assert [p.message for p in problems] == [
            f"document is nested more than {MAX_DEPTH} levels deep"
        ]
