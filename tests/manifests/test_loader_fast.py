"""libyaml parses manifests, with the lines, problems and guards of the pure-Python parser.

Each case is parsed twice: as gitopsd does (libyaml first) and by the pure-Python
parser alone; documents, their origins and the problems must be the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gitopsd.manifests import loader
from gitopsd.manifests.loader import MAX_DEPTH, parse_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

CASES = {
    "plain": "kind: Service\nserviceName: web\ndesiredCount: 2\n",
    "documents": "kind: A\nx: 1\n---\n---\nkind: B\ny: [1, 2, {z: 3}]\n...\n",
    "anchors and merge keys": (
        "base: &b {cpu: 256, memory: 512}\nkind: TaskDefinition\n"
        "containerDefinitions:\n  - <<: *b\n    name: main\n"
    ),
    "bad merge key": "kind: X\na:\n  <<: [1, 2]\n",
    "duplicate keys": "kind: X\nname: a\nname: b\n",
    "NaN and infinity": "kind: X\ncpu: .nan\nmemory: -.inf\n",
    "dates, nulls, booleans": "kind: X\nat: 2026-01-02\nnone: ~\nyes: true\noct: 0o17\n",
    "unsupported tag": "kind: X\nv: !!binary aGVsbG8=\nw: !custom x\n",
    "not a mapping": "- a\n- b\n",
    "non-string key": "kind: X\n[1, 2]: y\n",
    "syntax error": "kind: X\nlist: [1, 2\nnext: 3\n",
    "bad indentation": "kind: X\n  a: 1\n b: 2\n",
    "tab": "kind: X\n\tnested: 1\n",
    "control character": "kind: X\nv: a\x07b\n",
    "error in a later document": "kind: A\nx: 1\n---\nkind: B\ny: {\n",
    "recursive alias": "kind: X\na: &a [*a]\n",
    "alias bomb": "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n"
        for p, c in zip("abcdef", "bcdefg", strict=True)
    )
    + "kind: X\n",
    "deep flow": "kind: X\nv: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n",
    "deeper than libyaml goes": "kind: X\nv: " + "[" * 2000 + "]" * 2000 + "\n",
    "deep block": "kind: X\n" + "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5)),
    "unicode": "kind: X\nname: caf\u00e9 \U0001f600\n",
}


def both(text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    fast = parse_file("m.yaml", text.encode())
    monkeypatch.setattr(loader, "_FAST_LOADER", None)
    slow = parse_file("m.yaml", text.encode())
    monkeypatch.undo()
    return fast, slow


@pytest.mark.skipif(not getattr(yaml, "__with_libyaml__", False), reason="no libyaml")
@pytest.mark.parametrize("name", sorted(CASES))
def test_same_as_the_pure_python_parser(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = both(CASES[name], monkeypatch)
    assert fast == slow


@pytest.mark.skipif(not getattr(yaml, "__with_libyaml__", False), reason="no libyaml")
def test_examples_parse_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    files = sorted(EXAMPLES.rglob("*.yaml"))
    assert files
    for path in files:
        fast, slow = both(path.read_text(), monkeypatch)
        assert fast == slow, path


@pytest.mark.skipif(not getattr(yaml, "__with_libyaml__", False), reason="no libyaml")
def test_valid_text_goes_to_libyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[type[object]] = []
    real = yaml.compose_all

    def spy(text: str, Loader: type[object]) -> object:
        used.append(Loader)
        return real(text, Loader=Loader)  # type: ignore[arg-type]

    monkeypatch.setattr(yaml, "compose_all", spy)
    docs, problems = parse_file("m.yaml", CASES["anchors and merge keys"].encode())
    assert problems == []
    assert docs[0].where("/containerDefinitions/0/name").line == 5
    assert used == [yaml.CSafeLoader]
