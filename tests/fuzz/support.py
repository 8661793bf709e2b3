"""Shared settings, guards and hostile inputs for the fuzz tests (tests/fuzz).

The fuzz tests promise, for every input: a result or a clear gitopsd error,
never an internal error (any other exception), a hang or unbounded memory.

- Bounded and deterministic by default: ``FUZZ`` runs ``DEFAULT_EXAMPLES`` examples
  per test, derandomized (the same examples on every run, so CI never flakes on a
  new find). The whole suite takes well under a minute on a small machine.
- To explore: ``GITOPSD_FUZZ_EXAMPLES=5000 GITOPSD_FUZZ_RANDOM=1 .venv/bin/pytest
  tests/fuzz`` draws new examples each run and keeps failures in ``.hypothesis/``
  (replayed first next time). A failure prints the smallest input found; add it
  to the test as an ``@example`` when fixing the bug, so it stays covered.
- Each example has a hypothesis ``deadline`` (reported after the fact) and a hard
  time limit (:func:`time_limit`, a ``SIGALRM`` timer that raises inside the call),
  so a hang fails one example fast instead of the whole run at pytest's timeout.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from types import FrameType
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from gitopsd.errors import Problem

#: Examples per fuzz test unless ``GITOPSD_FUZZ_EXAMPLES`` says otherwise.
DEFAULT_EXAMPLES = 150
#: A hard cap on one call of the code under test, in seconds.
TIME_LIMIT = 10.0

_RANDOM = os.environ.get("GITOPSD_FUZZ_RANDOM", "") not in ("", "0")

FUZZ = settings(
    max_examples=int(os.environ.get("GITOPSD_FUZZ_EXAMPLES", DEFAULT_EXAMPLES)),
    derandomize=not _RANDOM,
    database=settings().database if _RANDOM else None,
    deadline=timedelta(seconds=5),
    print_blob=True,
    # No "explain" phase: its line tracing makes the pure-Python YAML parser ten times slower.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: For the tests of large hostile inputs: a third of the examples (each takes longer).
HOSTILE = settings(FUZZ, max_examples=max(10, FUZZ.max_examples // 3))


class Hung(Exception):
    """The code under test ran past :data:`TIME_LIMIT` (a hang, or near enough)."""


@contextlib.contextmanager
def time_limit(seconds: float = TIME_LIMIT) -> Iterator[None]:
    """Raise :class:`Hung` inside the block once it has run ``seconds``.

    pytest-timeout arms the same ``SIGALRM`` timer for the whole test; its handler
    and the time it had left are put back afterwards.
    """
    start = time.monotonic()

    def expired(signum: int, frame: FrameType | None) -> None:
        raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            left = outer - (time.monotonic() - start)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))


def assert_located(problems: list[Problem], file: str, raw: bytes | str) -> None:
    """Every problem names ``file``, a line inside it (or none) and says something.

    Lines are counted as YAML does: NEL and the Unicode line separators end lines too.
    """
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text_lines = len(text.splitlines())
    for problem in problems:
        assert isinstance(problem, Problem)
        assert problem.file == file, problem
        assert isinstance(problem.message, str)
        assert problem.message.strip(), problem
        assert problem.line is None or 1 <= problem.line <= text_lines + 1, problem


def assert_plain_data(value: Any, depth: int = 0) -> None:
    """``value`` is JSON data that AWS accepts: no NaN or infinity, string keys, bounded depth."""
    assert depth <= 200
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str)
            assert_plain_data(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            assert_plain_data(item, depth + 1)
    elif isinstance(value, float):
        assert math.isfinite(value), value
    else:
        assert value is None or isinstance(value, str | int | bool), type(value)
    if depth == 0:
        json.dumps(value, allow_nan=False)


# --- data -------------------------------------------------------------------------------------

#: Keys that mean something to gitopsd or ECS, and keys that mean trouble.
KEYS = st.sampled_from(
    [
        "kind",
        "family",
        "serviceName",
        "taskDefinition",
        "desiredCount",
        "containerDefinitions",
        "name",
        "image",
        "cpu",
        "memory",
        "environment",
        "secrets",
        "value",
        "valueFrom",
        "target",
        "mergePatch",
        "jsonPatch",
        "op",
        "path",
        "from",
        "tags",
        "",
        "~",
        "/",
        "~1",
        "a/b",
        "..",
        "0",
        "-",
        "${X}",
        "<<",
    ]
) | st.text(max_size=8)

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["Service", "TaskDefinition", "web", "${X}", "$${X}", "${", "nginx:1"])
)

JSON_DATA = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=25,
)

#: A task definition and a service close to what users write: mutations of them
#: get further into overlays and validation than random data does.
TASK_DEFINITION: dict[str, Any] = {
    "kind": "TaskDefinition",
    "family": "web",
    "cpu": "256",
    "memory": "512",
    "containerDefinitions": [
        {
            "name": "web",
            "image": "nginx:${TAG}",
            "essential": True,
            "environment": [{"name": "MODE", "value": "prod"}],
            "portMappings": [{"containerPort": 80}],
        }
    ],
}
SERVICE: dict[str, Any] = {
    "kind": "Service",
    "serviceName": "web",
    "taskDefinition": "web",
    "desiredCount": 2,
    "launchType": "FARGATE",
}


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    """A realistic document with a few fields replaced, added or removed."""
    doc: dict[str, Any] = json.loads(json.dumps(draw(st.sampled_from([TASK_DEFINITION, SERVICE]))))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(sorted(doc)) | KEYS)
        action = draw(st.sampled_from(["set", "drop"]))
        if action == "drop":
            doc.pop(key, None)
        else:
            doc[key] = draw(JSON_DATA)
    return doc


# --- hostile text -----------------------------------------------------------------------------

YAML_TOKENS = st.sampled_from(
    [
        "kind: Service\n",
        "kind: TaskDefinition\n",
        "serviceName: web\n",
        "family: web\n",
        "a: ",
        "- ",
        "? ",
        ": ",
        "&a ",
        "&b ",
        "*a",
        "*b",
        "<<: ",
        "<<: *a\n",
        "!!python/object:os.system ",
        "!!python/object/apply:os.system [ls]",
        "!!binary ",
        "!!set ",
        "!!omap ",
        "!!timestamp ",
        "!!float ",
        "!!int ",
        "!!str ",
        "!!merge ",
        "!custom ",
        "!<tag:x> ",
        "{",
        "}",
        "[",
        "]",
        ", ",
        "\n",
        "  ",
        "\t",
        "---\n",
        "...\n",
        "'",
        '"',
        "|\n",
        ">-\n",
        "# c\n",
        ".nan",
        ".inf",
        "-.inf",
        "NaN",
        "1e999",
        "0x1F",
        "0o17",
        "~",
        "null",
        "yes",
        "2001-12-14t21:59:43.10-05:00",
        "2002-13-45",
        "%YAML 1.1\n",
        "%TAG ! tag:x,2000:\n",
        "\ufeff",
        "\x00",
        "\x85",
        "\u2028",
        "\ud800",
        "${X}",
        "\\",
        "\\u0000",
        "é",
    ]
)

JSON_TOKENS = st.sampled_from(
    [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        '"kind"',
        '"Service"',
        '"TaskDefinition"',
        '"serviceName"',
        '"web"',
        '"a"',
        '"\\ud800"',
        '"\\u0000"',
        '"\\',
        "NaN",
        "Infinity",
        "-Infinity",
        "1e999",
        "-0",
        "12345678901234567890123",
        "0.5",
        "true",
        "false",
        "null",
        " ",
        "\n",
        "\t",
        "\ufeff",
        "\x00",
        "//",
        "'a'",
    ]
)


def yaml_bomb(width: int, depth: int) -> str:
    """ "Billion laughs": each level a list of ``width`` aliases of the level before."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, depth + 1):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "kind: Service\n" + "\n".join(lines) + "\n"


def merge_bomb(width: int, depth: int) -> str:
    """The same with merge keys: each level merges ``width`` aliases of the level before."""
    lines = [f"m0: &m0 {{{', '.join(f'k{i}: {i}' for i in range(width))}}}"]
    for i in range(1, depth + 1):
        lines.append(f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * width)}], own{i}: {i}}}")
    return "kind: Service\n" + "\n".join(lines) + "\n"


@st.composite
def hostile_yaml(draw: st.DrawFn) -> str:
    """Shapes known to hurt YAML loaders, at sizes drawn by hypothesis."""
    shape = draw(
        st.sampled_from(
            [
                "bomb",
                "merge-bomb",
                "deep-flow",
                "deep-block",
                "deep-mapping",
                "huge-scalar",
                "many-keys",
                "duplicates",
                "recursive",
                "recursive-merge",
                "many-docs",
                "python-tags",
            ]
        )
    )
    n = draw(st.integers(min_value=1, max_value=12))
    if shape == "bomb":
        return yaml_bomb(draw(st.integers(2, 12)), n)
    if shape == "merge-bomb":
        return merge_bomb(draw(st.integers(2, 12)), n)
    if shape == "deep-flow":
        depth = draw(
            st.integers(1, 400)
        )  # deeper costs PyYAML's scanner ~2 s, see test_fuzz_loader
        return "kind: Service\nx: " + "[" * depth + "]" * depth + "\n"
    if shape == "deep-block":
        depth = draw(st.integers(1, 300))
        return (
            "kind: Service\n"
            + "".join(f"{'  ' * i}k{i}:\n" for i in range(depth))
            + "  " * depth
            + "v\n"
        )
    if shape == "deep-mapping":
        depth = draw(st.integers(1, 5000))
        return "kind: Service\nx: " + "{a: " * depth + "1" + "}" * depth + "\n"
    if shape == "huge-scalar":
        size = draw(st.integers(1, 100)) * 1000
        return (
            "kind: Service\nserviceName: " + "x" * size + "\nimage: '" + "${" * (size // 2) + "'\n"
        )
    if shape == "many-keys":
        return "kind: Service\n" + "".join(f"k{i}: {i}\n" for i in range(n * 300))
    if shape == "duplicates":
        return "kind: Service\n" + "serviceName: web\n" * (n * 100)
    if shape == "recursive":
        return "kind: Service\na: &a [*a, *a]\nb: &b {x: *b}\n"
    if shape == "recursive-merge":
        return "kind: Service\na: &a {<<: *a}\n"
    if shape == "many-docs":
        return "---\nkind: Service\nserviceName: web\n" * (n * 50)
    return (
        "kind: !!python/object/apply:os.system [echo pwned]\n"
        "x: !!python/name:os.system\n"
        "y: !!python/object/new:dict {}\n"
    )
