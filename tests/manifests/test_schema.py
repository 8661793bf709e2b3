"""The manifest layer is backend-neutral: it renders whatever kinds a backend's schema names."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from gitopsd.errors import Problem
from gitopsd.manifests.loader import LocatedDoc
from gitopsd.manifests.schema import Kind, Schema

from .support import Repo


def _validate(docs: Sequence[LocatedDoc]) -> list[Problem]:
    return [d.problem("/size", "too big") for d in docs if d.data.get("size", 0) > 10]


WIDGETS = Schema.of(
    [
        Kind(
            "Widget",
            "id",
            ignored_fields=frozenset({"createdAt"}),
            wrapper_keys=frozenset({"widgets"}),
        ),
        Kind("Gadget", "label"),
    ],
    _validate,
    "widgetctl get",
)


@pytest.fixture
def widgets(tmp_path: Path) -> Repo:
    return Repo(tmp_path, WIDGETS)


def test_a_schema_lists_its_kinds_and_names_documents() -> None:
    assert WIDGETS.kind_names == ["Widget", "Gadget"]
    doc = LocatedDoc("a.yaml", 1, {"kind": "Gadget", "label": "g", "id": "x"})
    assert WIDGETS.name_of(doc) == "g"
    assert WIDGETS.name_of(doc.replace(data={"kind": "Gadget", "label": 1})) is None
    assert WIDGETS.name_of(doc.replace(data={"kind": "Other", "label": "g"})) is None
    assert WIDGETS.wrapped_kind("widgets") == "Widget"
    assert WIDGETS.wrapped_kind("gadgets") is None


def test_another_backend_s_kinds_render(widgets: Repo) -> None:
    widgets.write("app/w.yaml", "kind: Widget\nid: w1\nsize: 3\ncreatedAt: today\n")
    widgets.write("app/g.yaml", "kind: Gadget\nlabel: g1\n")
    widgets.write(
        "overlays/prod/p.yaml", "target: {kind: Widget, name: w1}\nmergePatch: {size: 4}\n"
    )
    resources = widgets.render(overlays=["overlays/prod"])
    assert [(r.kind, r.name, r.spec) for r in resources] == [
        ("Gadget", "g1", {"label": "g1"}),
        ("Widget", "w1", {"id": "w1", "size": 4}),
    ]


def test_another_backend_s_kinds_and_validator_in_messages(widgets: Repo) -> None:
    widgets.write("app/a.yaml", "kind: Service\nserviceName: web\n")
    widgets.write("app/b.json", '{"widgets": [{"id": "w"}]}')
    widgets.write("app/c.yaml", "kind: Widget\nid: w\nsize: 11\n")
    widgets.write("overlays/prod/p.yaml", "target: {kind: Widget, name: nope}\nmergePatch: {}\n")
    kinds = "(known kinds: Widget, Gadget)"
    assert widgets.problems(overlays=["overlays/prod"]) == [
        f"app/a.yaml:1: kind: unknown kind 'Service' {kinds}",
        f"app/b.json:1: missing 'kind' {kinds}; this looks like `widgetctl get` output: "
        "make the object under 'widgets' the document and add 'kind: Widget'",
        "app/c.yaml:3: size: too big",
        "overlays/prod/p.yaml:1: target: patch target Widget 'nope' does not exist in the app "
        "(Widget names: w)",
    ]
