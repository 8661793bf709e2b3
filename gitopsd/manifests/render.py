"""Render an app: its manifest files in, validated :class:`Resource` documents out.

The pipeline is load base documents from ``app.path`` -> apply overlays in
configuration order -> substitute ``${VAR}`` from ``app.vars`` -> validate.
Values marked secret (``secret_vars``, ``vars_from_env`` and what the
schema's :meth:`~gitopsd.manifests.schema.Schema.secret_values` finds in the
final resources) are registered with :mod:`gitopsd.redact` on the way, so no
output shows them. Every stage runs even when an earlier one found problems, so one
:class:`ManifestError` lists everything wrong with the app (in file/line
order) and a user fixes it in one go. Files come through a :data:`Reader`, so
the same code renders a Git tree or a local checkout. Which kinds exist and
how the final documents are validated come from the backend's
:class:`~gitopsd.manifests.schema.Schema`.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from gitopsd.config import DEFAULT_MAX_FILE_SIZE, DEFAULT_SECRET_ENV_NAMES, AppConfig
from gitopsd.errors import ManifestError, Problem
from gitopsd.manifests.loader import (
    MANIFEST_PATTERNS,
    LocatedDoc,
    is_manifest_file,
    load_manifests,
    sort_problems,
)
from gitopsd.manifests.overlay import apply_overlay, parse_overlay
from gitopsd.manifests.schema import Schema
from gitopsd.manifests.secrets import app_variables
from gitopsd.manifests.substitute import substitute_all
from gitopsd.model import Origin, Resource
from gitopsd.redact import REDACTOR, redact_obj

#: ``prefix`` (repo-relative directory, ``"."`` for the root) ->
#: {repo-relative posix path: content} of every file below it, recursively.
Reader = Callable[[str], Mapping[str, bytes]]


class RenderCache:
    """Apps rendered before, by a digest of everything rendering reads; LRU-bounded.

    The key covers the manifest files of the app's path and overlays (path and
    content), the app's whole configuration (path, overlays, vars, ...), the
    values of its variables (those read from the environment included), the
    ``[manifests]`` settings and the schema's kinds: any change to one of them
    renders again. Only successful renders are kept, with the secret values
    they registered, registered again on a hit. The resources are shared
    between passes: stages treat them as immutable.
    """

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[tuple[Resource, ...], tuple[str, ...]]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes) -> list[Resource] | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        resources, secrets = found
        REDACTOR.register_all(secrets)
        return list(resources)

    def put(self, key: bytes, resources: Sequence[Resource], secrets: Sequence[str]) -> None:
        with self._lock:
            self._entries[key] = (tuple(resources), tuple(secrets))
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def render_key(
    app: AppConfig,
    variables: Mapping[str, str],
    files: Mapping[str, Mapping[str, bytes]],
    schema: Schema,
    settings: Sequence[object],
) -> bytes:
    """The digest a :class:`RenderCache` keys a render by (see there)."""
    h = hashlib.blake2b(digest_size=32)

    def add(part: str | bytes) -> None:
        data = part.encode("utf-8", "surrogateescape") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)

    add(app.model_dump_json())
    add(json.dumps(sorted(variables.items())))
    add(repr(list(settings)))
    add(repr(sorted(schema.kinds)))
    for directory in sorted(files):
        add(directory)
        for path in sorted(files[directory]):
            add(path)
            add(files[directory][path])
    return h.digest()


def render_app(
    read: Reader,
    app: AppConfig,
    schema: Schema,
    *,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    secret_env_names: Sequence[str] = DEFAULT_SECRET_ENV_NAMES,
    cache: RenderCache | None = None,
) -> list[Resource]:
    """The app's final resources; raises :class:`ManifestError` with every problem found.

    ``schema`` is the backend's: the kinds it accepts, and ``schema.validate``
    checks the final documents. A manifest file (base or overlay) larger than
    ``max_file_size`` bytes (``[manifests].max_file_size``) is a problem and is
    not parsed. ``app.vars_from_env`` is read now: an unset variable is a
    :class:`~gitopsd.errors.ConfigError`. Secret values (``app.secret_vars``,
    ``app.vars_from_env``, and what ``schema.secret_values`` finds given the
    ``secret_env_names`` patterns, ``[manifests].secret_env_names``) are
    registered with :mod:`gitopsd.redact`.

    With ``cache``, an app whose files, configuration and variables are those of
    a render it holds is not parsed again (:class:`RenderCache`).
    """
    variables = app_variables(app)
    variables.register()
    problems: list[Problem] = []
    base_dir = normalize_dir(app.path)
    overlay_dirs = [normalize_dir(d) for d in app.overlays]
    files = partition_files(read, [base_dir, *overlay_dirs])
    key = b""
    if cache is not None:
        settings = (max_file_size, tuple(secret_env_names))
        key = render_key(app, variables.values, files, schema, settings)
        cached = cache.get(key)
        if cached is not None:
            return cached

    if not files[base_dir]:
        problems.append(
            Problem(base_dir, None, "", f"path {base_dir!r} has no manifests ({MANIFEST_PATTERNS})")
        )
    docs, found = load_manifests(files[base_dir], schema, max_file_size=max_file_size)
    problems.extend(found)

    for overlay_dir in overlay_dirs:
        if overlay_dir == base_dir:
            problems.append(Problem(overlay_dir, None, "", "an overlay cannot be the app's path"))
            continue
        if not files[overlay_dir]:
            problems.append(
                Problem(
                    overlay_dir,
                    None,
                    "",
                    f"overlay {overlay_dir!r} has no patches ({MANIFEST_PATTERNS})",
                )
            )
        items, found = parse_overlay(files[overlay_dir], schema, max_file_size=max_file_size)
        problems.extend(found)
        docs, found = apply_overlay(docs, items, schema)
        problems.extend(found)

    docs, found = substitute_all(docs, variables.values, variables.secret)
    problems.extend(found)
    resources = [to_resource(doc, schema) for doc in docs]
    # Before validation, so that a problem quoting a secret value is masked too.
    secrets: list[str] = []
    for resource in resources:
        found_secrets = schema.secret_values(resource, secret_env_names)
        REDACTOR.register_all(found_secrets)
        secrets.extend(found_secrets)
    problems.extend(schema.validate(docs))
    problems.extend(schema.validate_app(docs, app))
    if problems:
        raise ManifestError(sort_problems(problems))
    if cache is not None:
        cache.put(key, resources, secrets)
    return resources


def to_resource(doc: LocatedDoc, schema: Schema) -> Resource:
    """A validated document as a :class:`Resource` (``spec`` without ``kind``)."""
    kind = doc.kind or ""
    known = schema.kinds.get(kind)
    name = doc.data.get(known.name_field if known is not None else "")
    return Resource(kind, str(name), doc.spec, Origin(doc.file, doc.line))


def normalize_dir(path: str) -> str:
    """A repo-relative directory in one spelling: ``"./a/b/"`` -> ``"a/b"``, root -> ``"."``."""
    return posixpath.normpath(path.strip("/") or ".")


def _is_below(path: str, directory: str) -> bool:
    return directory == "." or path.startswith(directory + "/")


def partition_files(read: Reader, dirs: Sequence[str]) -> dict[str, dict[str, bytes]]:
    """The manifest files of each directory in ``dirs``; a file in several goes to the deepest.

    That keeps an overlay directory below the app's path (``app/`` and
    ``app/overlays/prod/``) out of the base documents, and vice versa.
    """
    out: dict[str, dict[str, bytes]] = {d: {} for d in dirs}
    for directory in out:
        files = read(directory)
        for path in files:
            if not _is_below(path, directory) or not is_manifest_file(path):
                continue
            owner = max((d for d in out if _is_below(path, d)), key=lambda d: (d != ".", len(d)))
            if owner == directory:
                out[directory][path] = files[path]
    return out


# --- local checkouts --------------------------------------------------------------------------


class _LazyFiles(Mapping[str, bytes]):
    """File paths listed up front, contents read on access (most files are never read)."""

    def __init__(self, root: Path, paths: list[str]) -> None:
        self._root = root
        self._paths = paths
        self._known = set(paths)

    def __getitem__(self, path: str) -> bytes:
        if path not in self._known:
            raise KeyError(path)
        return (self._root / path).read_bytes()

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


def read_directory(root: Path) -> Reader:
    """A :data:`Reader` over a local checkout rooted at ``root`` (``.git`` is skipped).

    Symbolic links that point outside ``root`` are ignored.
    """
    base = root.resolve()

    def read(prefix: str) -> Mapping[str, bytes]:
        start = base / normalize_dir(prefix)
        paths: list[str] = []
        if not start.is_dir():
            return _LazyFiles(base, paths)
        for current, dirnames, filenames in os.walk(start):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            for name in sorted(filenames):
                full = Path(current) / name
                if not full.resolve().is_relative_to(base) or not full.is_file():
                    continue
                paths.append(full.relative_to(base).as_posix())
        return _LazyFiles(base, paths)

    return read


# --- output -----------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style, list items indented under their key, multi-line strings as ``|``."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_resources(resources: Sequence[Resource]) -> str:
    """Multi-document YAML for ``gitopsd render``: ``kind`` first, then fields as written.

    Secret values (:mod:`gitopsd.redact`) show as ``***``: they are masked in the data,
    before YAML quoting or block style could split or escape them.
    """
    parts: list[str] = []
    for resource in resources:
        document: dict[str, Any] = redact_obj({"kind": resource.kind, **resource.spec})
        body = yaml.dump(
            document,
            Dumper=_Dumper,
            sort_keys=False,
            default_flow_style=False,
            allow_unicode=True,
            width=10_000,
        )
        parts.append(f"---\n# {resource.origin.file}:{resource.origin.line}\n{body}")
    return "".join(parts)
