"""Fuzzing the whole render: files in, resources or one ManifestError out.

The stages together (load, overlay, substitute, then the ECS backend's
validation against botocore's model and the guard-rails hook) see documents
shaped like real task definitions and services with fields replaced by
arbitrary data, plus patches and variables. Whatever the files, the render
returns resources or raises :class:`ManifestError` whose problems name a file
that was read; any other exception is a bug.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from gitopsd.backends.ecs.schema import ecs_schema
from gitopsd.config import AppConfig
from gitopsd.errors import ManifestError
from gitopsd.manifests.render import render_app

from .support import FUZZ, JSON_DATA, manifests, time_limit

_VARIABLES = st.dictionaries(
    st.sampled_from(["TAG", "ENV", "X"]),
    st.text(st.characters(exclude_characters="\0"), max_size=8) | st.sampled_from(["${X}", "1"]),
)


def _patch(kind: str, body: Any) -> dict[str, Any]:
    return {"target": {"kind": kind, "name": "web"}, "mergePatch": body}


@FUZZ
@given(
    docs=st.lists(manifests(), min_size=1, max_size=3),
    patches=st.lists(
        st.builds(
            _patch,
            st.sampled_from(["TaskDefinition", "Service"]),
            st.dictionaries(st.sampled_from(["cpu", "desiredCount", "image", "tags"]), JSON_DATA),
        ),
        max_size=2,
    ),
    variables=_VARIABLES,
)
def test_any_files_render_or_give_a_manifest_error(
    docs: list[dict[str, Any]], patches: list[dict[str, Any]], variables: dict[str, str]
) -> None:
    files = {
        "app/base.yaml": yaml.safe_dump_all(docs, allow_unicode=True).encode(),
        "prod/patch.yaml": yaml.safe_dump_all(patches, allow_unicode=True).encode(),
    }

    def read(prefix: str) -> Mapping[str, bytes]:
        return {p: c for p, c in files.items() if prefix == "." or p.startswith(prefix + "/")}

    app = AppConfig(
        name="web",
        source="s",
        path="app",
        overlays=["prod"] if patches else [],
        cluster="prod",
        vars=variables,
    )
    with time_limit():
        try:
            resources = render_app(read, app, ecs_schema())
        except ManifestError as exc:
            problems = exc.problems
        else:
            problems = []
            assert all(r.kind in ("TaskDefinition", "Service") for r in resources)
    for problem in problems:
        assert problem.file in files or problem.file in ("app", "prod"), problem
        assert problem.message.strip(), problem
