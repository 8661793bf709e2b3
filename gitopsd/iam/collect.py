"""Find every AWS operation gitopsd's code can call, by reading the code, not running it.

The IAM policy gitopsd ships is derived from this list, and a test fails when
the two disagree, so the policy can neither miss a call nor grant one the code
never makes. Reading the source (with :mod:`ast`) rather than recording calls in
tests means a call on a path no test takes is still found.

What counts as a call, in every module of the ``gitopsd`` package except the
developer tooling (``gitopsd/local_aws``, ``gitopsd/demo.py``) and this package:

- ``x.call("DescribeServices", ...)``: :meth:`EcsClient.call
  <gitopsd.backends.ecs.client.EcsClient.call>`, the one door to ECS. A first
  argument that is not a string literal must be a name or attribute whose
  annotation, in the same module, is a ``Literal[...]`` alias (``op: EcsWrite``);
  the alias's members are the operations. Anything else is an error that says
  where, so a call the collector cannot see fails the test instead of slipping by.
- ``client.put_item(...)``: an aiobotocore client method, i.e. a method whose name
  is the snake_case (:func:`botocore.xform_name`) of an operation of a service the
  module creates a client for (``create_client("dynamodb")``), or of ECS in the
  modules that use :class:`EcsClient`. A method named like an operation in a
  module with no client of that service is reported as an error too.
- ``get_paginator("list_services")``: the paginated operation.
- ``create_client(...)`` with a service that is not a string literal, or one the
  collector does not know, is an error.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import botocore.session
from botocore import xform_name

#: The services whose method names are recognised (``create_client`` of another is an error).
SERVICES: tuple[str, ...] = ("ecs", "dynamodb", "ssm", "sts", "secretsmanager", "cloudwatch")

#: Paths (relative to the package's parent) that are developer tooling, not the agent.
EXCLUDED: tuple[str, ...] = ("gitopsd/local_aws", "gitopsd/demo.py", "gitopsd/iam")

#: Modules that use :class:`EcsClient` (and so ECS) without creating a client themselves.
ECS_CLIENT_MODULE = "gitopsd.backends.ecs.client"
ECS_PACKAGE = "gitopsd/backends/ecs/"
#: The file of :meth:`EcsClient.call`, whose ``getattr`` dispatch its callers' literals name.
ECS_DOOR = "gitopsd/backends/ecs/client.py"


@dataclass(frozen=True, order=True)
class Operation:
    """One AWS API operation (``ecs``, ``DescribeServices``) and a place that calls it."""

    service: str
    name: str

    def __str__(self) -> str:
        return f"{self.service}:{self.name}"


@dataclass
class Collected:
    """What :func:`collect` found: operations with where each is called, and problems."""

    calls: dict[Operation, list[str]] = field(default_factory=dict)
    #: Places the collector cannot read, each with what to do (a test fails on any).
    problems: list[str] = field(default_factory=list)

    @property
    def operations(self) -> frozenset[Operation]:
        return frozenset(self.calls)

    def add(self, op: Operation, where: str) -> None:
        self.calls.setdefault(op, []).append(where)


@cache
def operation_names(service: str) -> dict[str, str]:
    """snake_case method name -> PascalCase operation name, from botocore's model."""
    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(name): name for name in model.operation_names}


def package_root() -> Path:
    """The directory holding the ``gitopsd`` package."""
    return Path(__file__).resolve().parents[2]


def source_files(root: Path | None = None) -> list[Path]:
    """The package's modules the collector reads (sorted; tooling excluded)."""
    base = root or package_root()
    out = []
    for path in sorted((base / "gitopsd").rglob("*.py")):
        rel = path.relative_to(base).as_posix()
        if any(rel == ex or rel.startswith(ex + "/") for ex in EXCLUDED):
            continue
        out.append(path)
    return out


def collect(root: Path | None = None) -> Collected:
    """Every AWS operation the package calls (see the module docstring)."""
    base = root or package_root()
    found = Collected()
    aliases: dict[str, frozenset[str]] = {}
    trees: list[tuple[str, ast.Module]] = []
    for path in source_files(base):
        rel = path.relative_to(base).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        trees.append((rel, tree))
        aliases.update(_literal_aliases(tree))
    for rel, tree in trees:
        _Module(rel, tree, aliases, found).scan()
    return found


def _literal_aliases(tree: ast.Module) -> dict[str, frozenset[str]]:
    """Module-level ``Name = Literal["A", "B"]`` (or ``Name: TypeAlias = ...``) aliases."""
    out: dict[str, frozenset[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        members = _literal_members(value)
        if isinstance(target, ast.Name) and members is not None:
            out[target.id] = members
    return out


def _literal_members(node: ast.expr) -> frozenset[str] | None:
    if not (isinstance(node, ast.Subscript) and _name_of(node.value) == "Literal"):
        return None
    items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    values = [i.value for i in items if isinstance(i, ast.Constant)]
    if len(values) != len(items) or not all(isinstance(v, str) for v in values):
        return None
    return frozenset(str(v) for v in values)


def _name_of(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


class _Module:
    """One module's calls."""

    def __init__(
        self, rel: str, tree: ast.Module, aliases: dict[str, frozenset[str]], out: Collected
    ) -> None:
        self.rel = rel
        self.tree = tree
        self.aliases = aliases
        self.out = out
        self.services = self._services()

    def where(self, node: ast.AST) -> str:
        return f"{self.rel}:{getattr(node, 'lineno', 0)}"

    def _services(self) -> set[str]:
        """The services this module has a client of."""
        services: set[str] = set()
        if self.rel.startswith(ECS_PACKAGE):
            services.add("ecs")
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom) and node.module == ECS_CLIENT_MODULE:
                services.add("ecs")
            if isinstance(node, ast.Call) and _name_of(node.func) == "create_client":
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    if arg.value in SERVICES:
                        services.add(arg.value)
                    else:
                        self.out.problems.append(
                            f"{self.where(node)}: create_client({arg.value!r}): a service "
                            f"gitopsd.iam does not know; add it to SERVICES in "
                            "gitopsd/iam/collect.py and its actions to gitopsd/iam/actions.py"
                        )
                else:
                    self.out.problems.append(
                        f"{self.where(node)}: create_client() with a service that is not a "
                        "string literal: name the service literally so gitopsd.iam can see it"
                    )
        return services

    def scan(self) -> None:
        for func, call in _calls(self.tree):
            method = _name_of(call.func)
            if isinstance(call.func, ast.Name) and method == "getattr":
                self._getattr(func, call)
            if not isinstance(call.func, ast.Attribute):
                continue
            if method == "call":
                self._ecs_call(func, call)
            elif method == "get_paginator":
                self._paginator(call)
        # A method referenced, called or not (``client.put_item(...)``, ``send =
        # client.put_item``): a reference that is never called costs a grant, never a miss.
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                self._client_method(node.attr, node)

    def _getattr(self, func: ast.FunctionDef | ast.AsyncFunctionDef | None, call: ast.Call) -> None:
        """``getattr(client, name)`` hides the method; only EcsClient.call may (its callers
        name the operation)."""
        if not self.services or len(call.args) < 2:
            return
        name = call.args[1]
        if isinstance(name, ast.Constant) and isinstance(name.value, str):
            self._client_method(name.value, call)
            return
        if self.rel == ECS_DOOR and func is not None and func.name == "call":
            return
        self.out.problems.append(
            f"{self.where(call)}: getattr() with a computed name in a module with an AWS client: "
            "gitopsd.iam cannot tell which operation it calls; call the method by name"
        )

    def _ecs_call(
        self, func: ast.FunctionDef | ast.AsyncFunctionDef | None, call: ast.Call
    ) -> None:
        if "ecs" not in self.services:
            self.out.problems.append(
                f"{self.where(call)}: .call() in a module that does not use EcsClient: "
                "gitopsd.iam cannot tell which service it calls"
            )
            return
        arg = call.args[0] if call.args else None
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            self._add("ecs", arg.value, call)
            return
        members = self._annotated_members(func, arg) if arg is not None else None
        if members is None:
            self.out.problems.append(
                f"{self.where(call)}: the operation passed to .call() is neither a string "
                "literal nor annotated with a Literal[...] alias in this module; pass a "
                "literal, or annotate the value (e.g. `op: EcsWrite`) so gitopsd.iam can "
                "list the operations"
            )
            return
        for name in sorted(members):
            self._add("ecs", name, call)

    def _annotated_members(
        self, func: ast.FunctionDef | ast.AsyncFunctionDef | None, arg: ast.expr
    ) -> frozenset[str] | None:
        """The Literal alias members of ``op`` or ``x.op`` (``x`` a parameter of ``func``).

        ``op``: the annotation of the enclosing function's parameter ``op``.
        ``x.op``: ``x``'s parameter annotation names a class of this module whose
        field ``op`` is annotated with the alias.
        """
        if func is None:
            return None
        params = {a.arg: a.annotation for a in (*func.args.args, *func.args.kwonlyargs)}
        if isinstance(arg, ast.Name):
            annotation = params.get(arg.id)
            return self.aliases.get(_annotation_name(annotation)) if annotation else None
        if isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Name):
            owner = params.get(arg.value.id)
            if owner is None:
                return None
            cls = self._class(_annotation_name(owner))
            if cls is None:
                return None
            for node in cls.body:
                if (
                    isinstance(node, ast.AnnAssign)
                    and isinstance(node.target, ast.Name)
                    and node.target.id == arg.attr
                ):
                    return self.aliases.get(_annotation_name(node.annotation))
        return None

    def _class(self, name: str) -> ast.ClassDef | None:
        for node in self.tree.body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                return node
        return None

    def _paginator(self, call: ast.Call) -> None:
        arg = call.args[0] if call.args else None
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            self.out.problems.append(
                f"{self.where(call)}: get_paginator() with an operation that is not a literal"
            )
            return
        for service in self._owners(arg.value):
            self._add(service, operation_names(service)[arg.value], call)

    def _client_method(self, method: str, call: ast.AST) -> None:
        known = [s for s in SERVICES if method in operation_names(s)]
        if not known:
            return
        owners = self._owners(method)
        if not owners:
            self.out.problems.append(
                f"{self.where(call)}: .{method}() is named like an AWS operation "
                f"({', '.join(f'{s}:{operation_names(s)[method]}' for s in known)}) in a module "
                "with no client of that service; if it is an AWS call, create the client in "
                "this module; if not, rename the method"
            )
            return
        for service in owners:
            self._add(service, operation_names(service)[method], call)

    def _owners(self, method: str) -> list[str]:
        return [s for s in sorted(self.services) if method in operation_names(s)]

    def _add(self, service: str, name: str, node: ast.AST) -> None:
        if name not in operation_names(service).values():
            self.out.problems.append(
                f"{self.where(node)}: {service} has no operation {name!r} in botocore's model"
            )
            return
        self.out.add(Operation(service, name), self.where(node))


def _annotation_name(node: ast.expr | None) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value  # a string annotation ("EcsWrite")
    return _name_of(node) if node is not None else ""


def _calls(
    tree: ast.Module,
) -> Iterator[tuple[ast.FunctionDef | ast.AsyncFunctionDef | None, ast.Call]]:
    """Every call with the innermost enclosing function (or None at module level)."""

    def walk(
        node: ast.AST, func: ast.FunctionDef | ast.AsyncFunctionDef | None
    ) -> Iterator[tuple[ast.FunctionDef | ast.AsyncFunctionDef | None, ast.Call]]:
        for child in ast.iter_child_nodes(node):
            inner = child if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else func
            if isinstance(child, ast.Call):
                yield inner, child
            yield from walk(child, inner)

    yield from walk(tree, None)


def format_calls(found: Collected, ops: Iterable[Operation] | None = None) -> str:
    """``service:Operation  file:line, ...`` lines, for messages."""
    chosen = sorted(found.calls if ops is None else ops)
    return "\n".join(f"  {op}  ({', '.join(found.calls.get(op, []))})" for op in chosen)
