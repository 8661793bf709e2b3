"""Strict ${VAR} substitution in string values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gitopsd.manifests.loader import parse_file
from gitopsd.manifests.substitute import substitute, substitute_text

from .support import SERVICE, Repo


def test_values_are_substituted_keys_are_not(repo: Repo) -> None:
    repo.write(
        "app/td.yaml",
        """\
        kind: TaskDefinition
        family: web-${ENV}
        containerDefinitions:
          - name: web
            image: "registry/${ENV}/web:${TAG}"
            dockerLabels:
              ${ENV}: "x${TAG}y"
        """,
    )
    (td,) = repo.render(variables={"ENV": "prod", "TAG": "1.2"})
    assert td.name == "web-prod"
    container = td.spec["containerDefinitions"][0]
    assert container["image"] == "registry/prod/web:1.2"
    assert container["dockerLabels"] == {"${ENV}": "x1.2y"}


def test_escape_and_lone_dollars() -> None:
    variables = {"A": "1"}
    assert substitute_text("$${A} ${A} $A $$ $ {A}", variables) == ("${A} 1 $A $$ $ {A}", [])
    assert substitute_text("$$${A}", variables) == ("$${A}", [])  # "$", "$${" -> "${", "A}"


def test_undefined_variable_names_file_line_field_and_defined_vars(repo: Repo) -> None:
    repo.write(
        "app/td.yaml",
        """\
        kind: TaskDefinition
        family: web
        containerDefinitions:
          - name: web
            image: nginx:${IMAGE_TAG}
        """,
    )
    assert repo.problems(variables={"REGION": "eu-west-1", "ENV": "prod"}) == [
        "app/td.yaml:5: containerDefinitions[0].image: undefined variable ${IMAGE_TAG}; "
        "define it in apps[].vars (defined: ENV, REGION)"
    ]


def test_malformed_references() -> None:
    _, errors = substitute_text("${not-a-name} ${", {})
    assert len(errors) == 2
    assert errors[0].startswith("invalid variable reference '${not-a-name}'")
    assert errors[1].startswith("unclosed '${'")
    assert substitute_text("${X}", {})[1] == [
        "undefined variable ${X}; define it in apps[].vars (defined: none)"
    ]


def test_values_cannot_inject_structure() -> None:
    (doc,), _ = parse_file("a.yaml", b"kind: Service\nserviceName: ${NAME}\n")
    done, problems = substitute(doc, {"NAME": "web\ndesiredCount: 9\n"})
    assert problems == []
    assert done.data == {"kind": "Service", "serviceName": "web\ndesiredCount: 9\n"}


def test_substituted_numbers_stay_strings_and_the_error_says_why(repo: Repo) -> None:
    repo.write("app/svc.yaml", SERVICE.replace("desiredCount: 2", "desiredCount: ${COUNT}"))
    repo.write(
        "app/td.yaml",
        "kind: TaskDefinition\nfamily: web\ncontainerDefinitions: [{name: w, image: x}]\n",
    )
    (problem,) = repo.problems(variables={"COUNT": "3"})
    assert problem.startswith("app/svc.yaml:4: desiredCount: expected integer, got string")
    assert "${VAR} substitutions are strings" in problem


@given(st.text(alphabet="ab${}", max_size=20))
def test_text_without_variables_round_trips_through_escaping(text: str) -> None:
    escaped = text.replace("${", "$${")
    result, errors = substitute_text(escaped, {})
    assert errors == []
    assert result == text
