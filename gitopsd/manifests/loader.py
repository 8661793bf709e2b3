"""Parse manifest files into documents that remember where every value came from.

Every later stage (overlays, substitution, validation) reports problems as
``file:line: field.path: message``. PyYAML's plain ``safe_load`` forgets line
numbers, so this module builds the data itself from the composed node tree
(YAML, composed by libyaml when PyYAML has it) or from a small position-tracking
scan (JSON) and keeps, for every value,
the line where it starts, keyed by a JSON pointer (``/containerDefinitions/0/image``).

It also makes paste-and-trim work: fields that the backend's describe output
prints but its write call does not accept (for ECS: ``taskDefinitionArn``,
``status``, ...) are dropped silently. Which kinds exist, which member names a
resource and which fields are dropped come from the backend's
:class:`~gitopsd.manifests.schema.Schema`; this module knows no backend.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import json
import json.decoder
import json.scanner
import math
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml
import yaml.constructor
import yaml.nodes
import yaml.reader

from gitopsd.config import DEFAULT_MAX_FILE_SIZE, format_size
from gitopsd.errors import Problem
from gitopsd.manifests.schema import Schema
from gitopsd.model import Origin
from gitopsd.pointer import child_pointer, display_path, is_below, parent_pointer

#: File name endings read as manifests (case-insensitive).
MANIFEST_SUFFIXES: tuple[str, ...] = (".yaml", ".yml", ".json")
#: The same, for messages.
MANIFEST_PATTERNS = "*.yaml, *.yml, *.json"

T = TypeVar("T")

# Guards against hostile or accidental blow-ups (alias bombs, runaway nesting).
MAX_DEPTH = 64
MAX_NODES = 200_000
_TOO_DEEP = f"document is nested more than {MAX_DEPTH} levels deep"


# --- located documents ------------------------------------------------------------------------


@dataclass(frozen=True)
class LocatedDoc:
    """One parsed document plus where each of its values came from.

    ``data`` is plain JSON-like data (dicts, lists, str, int, float, bool, None),
    including ``kind``. ``origins`` maps JSON pointers into ``data`` to the file
    and line where that value (for a mapping member: its key) starts; after an
    overlay a value can come from another file than the document. Treat
    instances as immutable: stages return new documents.
    """

    file: str
    line: int
    data: dict[str, Any]
    origins: Mapping[str, Origin] = field(default_factory=dict)

    @property
    def origin(self) -> Origin:
        """Where the document starts."""
        return Origin(self.file, self.line)

    @property
    def kind(self) -> str | None:
        kind = self.data.get("kind")
        return kind if isinstance(kind, str) else None

    @property
    def spec(self) -> dict[str, Any]:
        """The document without ``kind``: the backend's write-call input."""
        return {k: v for k, v in self.data.items() if k != "kind"}

    def where(self, pointer: str) -> Origin:
        """Where the value at ``pointer`` (or its nearest located ancestor) starts."""
        p = pointer
        while True:
            found = self.origins.get(p)
            if found is not None:
                return found
            if not p:
                return self.origin
            p = parent_pointer(p)

    def problem(self, pointer: str, message: str) -> Problem:
        """A :class:`Problem` about the value at ``pointer``."""
        at = self.where(pointer)
        return Problem(at.file, at.line, display_path(pointer), message)

    def replace(self, **changes: Any) -> LocatedDoc:
        return dataclasses.replace(self, **changes)


# --- files ------------------------------------------------------------------------------------


def is_manifest_file(path: str) -> bool:
    """Whether ``path`` is read as a manifest: a YAML/JSON file, no hidden component."""
    parts = path.split("/")
    if any(p.startswith(".") for p in parts):
        return False
    return path.lower().endswith(MANIFEST_SUFFIXES)


def manifest_files(files: Mapping[str, bytes]) -> list[str]:
    """The manifest files among ``files``, sorted by path."""
    return sorted(p for p in files if is_manifest_file(p))


def display_name(path: str) -> str:
    """``path`` as problems show it: bytes that are not UTF-8 as ``\\xNN``, never a surrogate.

    Git and the file system hand over such names with surrogate escapes
    (``lat\\udce9n.yaml``), which cannot be printed or encoded as UTF-8.
    """
    try:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that is not an escaped byte
        return path.encode("utf-8", "backslashreplace").decode("utf-8")


def parse_file(
    file: str, raw: bytes, *, max_file_size: int | None = None
) -> tuple[list[LocatedDoc], list[Problem]]:
    """Every non-empty mapping document of one file, and what was wrong.

    A JSON file (``*.json``) holds one document; a YAML file any number. A
    document that is not a mapping is a problem; ``kind`` is not checked here.
    Documents and problems name the file by :func:`display_name`. A file larger
    than ``max_file_size`` bytes (if given) is refused before it is decoded or
    parsed; :func:`read_documents` and everything above it pass the cap
    (default :data:`~gitopsd.config.DEFAULT_MAX_FILE_SIZE`).
    """
    file = display_name(file)
    if max_file_size is not None and len(raw) > max_file_size:
        return [], [too_large(file, len(raw), max_file_size)]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return [], [Problem(file, line, "", "not UTF-8 text")]
    if posixpath.splitext(file)[1].lower() == ".json":
        return _parse_json(file, text)
    return _parse_yaml(file, text)


def too_large(file: str, size: int, max_size: int) -> Problem:
    """The problem of a manifest file over the size cap."""

    def exact(n: int) -> str:
        human = format_size(n)
        return human if human.endswith(("byte", "bytes")) else f"{human} ({n} bytes)"

    return Problem(
        file,
        None,
        "",
        f"file is {exact(size)}, larger than the limit of {exact(max_size)} for one manifest "
        "file, so it was not parsed: split it, or raise [manifests].max_file_size",
    )


def _mapping_doc(
    file: str, line: int, data: Any, lines: dict[str, int]
) -> tuple[LocatedDoc | None, list[Problem]]:
    if data is None:
        return None, []  # an empty document
    if not isinstance(data, dict):
        got = json_type(data)
        return None, [Problem(file, line, "", f"a document must be a mapping, got {got}")]
    origins = {p: Origin(file, n) for p, n in lines.items()}
    return LocatedDoc(file, line, data, origins), []


def json_type(value: Any) -> str:
    """How messages name the JSON type of ``value``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


# --- YAML -------------------------------------------------------------------------------------

_TAG = "tag:yaml.org,2002:"
_CONSTRUCTED_TAGS = {f"{_TAG}{t}" for t in ("int", "float", "bool", "null")}


class _Located(Exception):
    """A problem that ends the document, with the line it was found on."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _YamlBuilder:
    """Turns one composed YAML document into plain data plus a pointer -> line map."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[str, int] = {}
        self.problems: list[Problem] = []
        self.nodes = 0
        self.active: set[int] = set()
        self.constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.nodes.Node, pointer: str, depth: int = 0) -> Any:
        line = node.start_mark.line + 1
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Located(line, f"document has more than {MAX_NODES} values (alias expansion?)")
        if depth > MAX_DEPTH:
            raise _Located(line, _TOO_DEEP)
        self.lines[pointer] = line
        if isinstance(node, yaml.nodes.ScalarNode):
            return self._scalar(node, pointer)
        if id(node) in self.active:
            raise _Located(line, "recursive YAML alias")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.nodes.SequenceNode):
                self._check_tag(node, "seq", pointer)
                return [
                    self.build(item, child_pointer(pointer, i), depth + 1)
                    for i, item in enumerate(node.value)
                ]
            assert isinstance(node, yaml.nodes.MappingNode)
            return self._mapping(node, pointer, depth)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.nodes.MappingNode, pointer: str, depth: int) -> dict[str, Any]:
        self._check_tag(node, "map", pointer)
        self._check_duplicates(node, pointer)
        self.constructor.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.nodes.ScalarNode):
                self.problems.append(
                    Problem(
                        self.file,
                        key_node.start_mark.line + 1,
                        display_path(pointer),
                        "mapping keys must be plain strings",
                    )
                )
                continue
            key = key_node.value
            child = child_pointer(pointer, key)
            out[key] = self.build(value_node, child, depth + 1)
            self.lines[child] = key_node.start_mark.line + 1  # the key's line names the field
        return out

    def _check_duplicates(self, node: yaml.nodes.MappingNode, pointer: str) -> None:
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.nodes.ScalarNode) or key_node.tag == f"{_TAG}merge":
                continue
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                self.problems.append(
                    Problem(
                        self.file,
                        line,
                        display_path(child_pointer(pointer, key_node.value)),
                        f"duplicate key {key_node.value!r} (first at line {seen[key_node.value]})",
                    )
                )
            else:
                seen[key_node.value] = line

    def _check_tag(self, node: yaml.nodes.Node, expected: str, pointer: str) -> None:
        if node.tag != f"{_TAG}{expected}":
            self._unsupported(node, pointer)

    def _unsupported(self, node: yaml.nodes.Node, pointer: str) -> None:
        self.problems.append(
            Problem(
                self.file,
                node.start_mark.line + 1,
                display_path(pointer),
                f"unsupported YAML tag {node.tag!r}; manifests hold plain JSON-like data",
            )
        )

    def _scalar(self, node: yaml.nodes.ScalarNode, pointer: str) -> Any:
        if node.tag in _CONSTRUCTED_TAGS:
            try:
                value = self.constructor.construct_object(node)
            except (ValueError, IndexError, KeyError, yaml.YAMLError):  # `!!int x`, `0b_`
                what = node.tag.removeprefix(_TAG)
                self.problems.append(
                    Problem(
                        self.file,
                        node.start_mark.line + 1,
                        display_path(pointer),
                        f"{node.value!r} is not a valid YAML {what}; "
                        "quote it if a string was meant",
                    )
                )
                return node.value
            if isinstance(value, float) and not math.isfinite(value):
                self.problems.append(
                    Problem(
                        self.file,
                        node.start_mark.line + 1,
                        display_path(pointer),
                        f"{node.value} is not a number JSON or AWS accepts (NaN and "
                        "infinity are not); quote it if a string was meant",
                    )
                )
            return value
        if node.tag == f"{_TAG}timestamp":
            return node.value  # keep dates as written; ECS takes strings
        if node.tag != f"{_TAG}str":
            self._unsupported(node, pointer)
        return node.value


#: libyaml's composer (PyYAML's C extension), when installed: about 5-10x faster.
_FAST_LOADER: type[Any] | None = getattr(yaml, "CSafeLoader", None)


def _parse_yaml(file: str, text: str) -> tuple[list[LocatedDoc], list[Problem]]:
    """Every document of a YAML file, and what was wrong.

    Text goes to libyaml's composer first (its nodes carry the same marks, so
    lines are kept). Text it refuses, or holding a character PyYAML's reader
    rejects, is parsed again by the pure-Python parser, whose messages (and
    positions) the problems have always quoted: an invalid file reads the same
    either way, and a valid one is parsed at C speed.
    """
    if _FAST_LOADER is not None and not yaml.reader.Reader.NON_PRINTABLE.search(text):
        try:
            nodes = list(yaml.compose_all(text, Loader=_FAST_LOADER))
        except (yaml.YAMLError, RecursionError):
            pass  # told below, in the pure-Python parser's words
        else:
            docs: list[LocatedDoc] = []
            problems: list[Problem] = []
            for node in nodes:
                _build_document(file, node, docs, problems)
            return docs, problems
    return _parse_yaml_python(file, text)


def _build_document(
    file: str, node: yaml.nodes.Node | None, docs: list[LocatedDoc], problems: list[Problem]
) -> None:
    """Add the document composed as ``node`` to ``docs``, what is wrong to ``problems``."""
    if node is None:
        return
    line = node.start_mark.line + 1
    builder = _YamlBuilder(file)
    try:
        data = builder.build(node, "")
    except _Located as exc:
        problems.append(Problem(file, exc.line, "", exc.message))
        return
    except yaml.MarkedYAMLError as exc:  # a bad merge key
        problems.append(_yaml_problem(file, exc))
        return
    problems.extend(builder.problems)
    doc, more = _mapping_doc(file, line, data, builder.lines)
    problems.extend(more)
    if doc is not None:
        docs.append(doc)  # keep it (last duplicate wins) so later checks still run


def _parse_yaml_python(file: str, text: str) -> tuple[list[LocatedDoc], list[Problem]]:
    docs: list[LocatedDoc] = []
    problems: list[Problem] = []
    try:
        for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
            _build_document(file, node, docs, problems)
    except yaml.MarkedYAMLError as exc:
        problems.append(_yaml_problem(file, exc))
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow: no mark, a position
        line, column = _line_column(text, exc.position)
        problems.append(
            Problem(file, line, "", f"invalid YAML at column {column}: {_reader_message(exc)}")
        )
    except yaml.YAMLError as exc:
        problems.append(Problem(file, None, "", f"invalid YAML: {exc}"))
    except RecursionError:  # PyYAML composes recursively: find where it got too deep
        problems.append(Problem(file, _yaml_too_deep_line(text), "", _TOO_DEEP))
    return docs, problems


def _yaml_too_deep_line(text: str) -> int | None:
    """The line where the YAML ``text`` first nests deeper than ``MAX_DEPTH`` (event scan).

    PyYAML's parser is not recursive, so it gets there when its composer did not.
    """
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH + 1:
                    mark = event.start_mark
                    return mark.line + 1 if mark is not None else None
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        pass
    return None


def _yaml_problem(file: str, exc: yaml.MarkedYAMLError) -> Problem:
    """The parser's error at the parser's own position: where it found the problem.

    PyYAML's marks are 0-based; problems count lines and columns from 1, as
    PyYAML's own message (``line 7, column 5``) and editors do. The construct the
    parser was in (``while parsing a flow sequence``) keeps its position too,
    since it often starts on an earlier line than the problem.
    """
    mark = exc.problem_mark or exc.context_mark
    what = exc.problem or exc.context or "syntax error"
    context = exc.context if exc.problem else None
    if context:
        started = exc.context_mark
        if started is not None and mark is not None and started.line != mark.line:
            context += f" started at line {started.line + 1}, column {started.column + 1}"
        elif started is not None and mark is not None and started.column != mark.column:
            context += f" started at column {started.column + 1}"
        what += f" ({context})"
    if mark is None:
        return Problem(file, None, "", f"invalid YAML: {what}")
    return Problem(file, mark.line + 1, "", f"invalid YAML at column {mark.column + 1}: {what}")


def _reader_message(exc: yaml.reader.ReaderError) -> str:
    if isinstance(exc.character, int):
        return f"unacceptable character #x{exc.character:04x}: {exc.reason}"
    return str(exc.reason)


def _line_column(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of the character at ``position`` in ``text``."""
    line_start = text.rfind("\n", 0, position) + 1
    return text.count("\n", 0, position) + 1, position - line_start + 1


# --- JSON -------------------------------------------------------------------------------------


# The stdlib's JSON string scanner (C-accelerated); typeshed does not declare it.
_scanstring: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


class _JsonBuilder:
    """Re-reads text that :func:`json.loads` accepted, noting the line of every value."""

    _WS = re.compile(r"[ \t\n\r]*")

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.text = text
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        self.lines: dict[str, int] = {}
        self.problems: list[Problem] = []

    def line_at(self, pos: int) -> int:
        return bisect.bisect_left(self.newlines, pos) + 1

    def skip(self, pos: int) -> int:
        m = self._WS.match(self.text, pos)
        return m.end() if m else pos

    def value(self, pos: int, pointer: str, depth: int = 0) -> tuple[Any, int]:
        pos = self.skip(pos)
        if depth > MAX_DEPTH:
            raise _Located(self.line_at(pos), _TOO_DEEP)
        self.lines[pointer] = self.line_at(pos)
        char = self.text[pos]
        if char == "{":
            return self._object(pos + 1, pointer, depth)
        if char == "[":
            items: list[Any] = []
            pos = self.skip(pos + 1)
            if self.text[pos] == "]":
                return items, pos + 1
            while True:
                item, pos = self.value(pos, child_pointer(pointer, len(items)), depth + 1)
                items.append(item)
                pos = self.skip(pos)
                if self.text[pos] == "]":
                    return items, pos + 1
                pos += 1  # ","
        if char == '"':
            return _scanstring(self.text, pos + 1, True)
        for literal, result in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(literal, pos):
                return result, pos + len(literal)
        for constant in ("NaN", "Infinity", "-Infinity"):  # json.loads accepts these
            if self.text.startswith(constant, pos):
                raise _Located(self.line_at(pos), f"invalid JSON: {constant} is not valid JSON")
        m = json.scanner.NUMBER_RE.match(self.text, pos)
        assert m is not None, "json.loads accepted the text"
        integer, frac, exp = m.groups()
        number: int | float = float(m.group(0)) if frac or exp else int(integer)
        return number, m.end()

    def _object(self, pos: int, pointer: str, depth: int) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        pos = self.skip(pos)
        if self.text[pos] == "}":
            return out, pos + 1
        while True:
            pos = self.skip(pos)
            key_line = self.line_at(pos)
            key, pos = _scanstring(self.text, pos + 1, True)
            child = child_pointer(pointer, key)
            if key in first_line:
                self.problems.append(
                    Problem(
                        self.file,
                        key_line,
                        display_path(child),
                        f"duplicate key {key!r} (first at line {first_line[key]})",
                    )
                )
            else:
                first_line[key] = key_line
            pos = self.skip(pos) + 1  # ":"
            out[key], pos = self.value(pos, child, depth + 1)
            self.lines[child] = key_line
            pos = self.skip(pos)
            if self.text[pos] == "}":
                return out, pos + 1
            pos += 1  # ","


def _parse_json(file: str, text: str) -> tuple[list[LocatedDoc], list[Problem]]:
    if not text.strip():
        return [], []
    try:
        json.loads(text)  # NaN and Infinity pass here; the builder reports them with a line
    except json.JSONDecodeError as exc:
        # json's lineno and colno count from 1 already
        message = f"invalid JSON at column {exc.colno}: {exc.msg}"
        return [], [Problem(file, exc.lineno, "", message)]
    except RecursionError:
        return [], [Problem(file, _json_too_deep_line(text), "", _TOO_DEEP)]
    builder = _JsonBuilder(file, text)
    try:
        data, _ = builder.value(0, "")
    except _Located as exc:
        return [], [Problem(file, exc.line, "", exc.message)]
    line = builder.lines[""]
    doc, problems = _mapping_doc(file, line, data, builder.lines)
    return ([doc] if doc else []), builder.problems + problems


_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _json_too_deep_line(text: str) -> int | None:
    """The line where the JSON ``text`` first nests deeper than ``MAX_DEPTH`` (strings skipped)."""
    depth = 0
    for m in _JSON_TOKENS.finditer(text):
        token = m.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH + 1:
                return text.count("\n", 0, m.start()) + 1
        elif token in "]}":
            depth -= 1
    return None


# --- manifests --------------------------------------------------------------------------------


def check_manifest(doc: LocatedDoc, schema: Schema) -> tuple[LocatedDoc | None, list[Problem]]:
    """Check ``kind`` against ``schema`` and drop read-only fields pasted from describe output."""
    kinds = ", ".join(schema.kind_names)
    if "kind" not in doc.data:
        return None, [doc.problem("", _missing_kind_message(doc.data, kinds, schema))]
    kind = doc.data["kind"]
    if not isinstance(kind, str) or kind not in schema.kinds:
        shown = json.dumps(kind) if not isinstance(kind, str) else repr(kind)
        return None, [doc.problem("/kind", f"unknown kind {shown} (known kinds: {kinds})")]
    dropped = schema.kinds[kind].ignored_fields & doc.data.keys()
    if not dropped:
        return doc, []
    data = {k: v for k, v in doc.data.items() if k not in dropped}
    gone = [child_pointer("", k) for k in dropped]
    origins = {p: o for p, o in doc.origins.items() if not any(is_below(p, g) for g in gone)}
    return doc.replace(data=data, origins=origins), []


def _missing_kind_message(data: Mapping[str, Any], kinds: str, schema: Schema) -> str:
    if "target" in data:
        return (
            f"missing 'kind' (known kinds: {kinds}); this looks like an overlay patch: "
            "keep patches in a directory listed in apps[].overlays, outside the app's path"
        )
    if len(data) == 1:
        (key,) = data
        kind = schema.wrapped_kind(key)
        if kind is not None:
            return (
                f"missing 'kind' (known kinds: {kinds}); this looks like "
                f"`{schema.describe_command}` output: make the object under {key!r} "
                f"the document and add 'kind: {kind}'"
            )
    return f"missing 'kind' (known kinds: {kinds})"


def load_manifests(
    files: Mapping[str, bytes], schema: Schema, *, max_file_size: int = DEFAULT_MAX_FILE_SIZE
) -> tuple[list[LocatedDoc], list[Problem]]:
    """Every manifest among ``files`` (path -> content), in path and document order.

    A file over ``max_file_size`` bytes is a problem and is not parsed.
    """
    return read_documents(
        files, functools.partial(check_manifest, schema=schema), max_file_size=max_file_size
    )


def read_documents(
    files: Mapping[str, bytes],
    read: Callable[[LocatedDoc], tuple[T | None, list[Problem]]],
    *,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
) -> tuple[list[T], list[Problem]]:
    """``read`` over every document of the manifest files among ``files``, in order.

    Returns what ``read`` made of each document (``None``: nothing) and every
    problem, from parsing as well as from ``read``. A file over ``max_file_size``
    bytes is a problem and is not parsed.
    """
    out: list[T] = []
    problems: list[Problem] = []
    for path in manifest_files(files):
        parsed, found = parse_file(path, files[path], max_file_size=max_file_size)
        problems.extend(found)
        for doc in parsed:
            item, found = read(doc)
            problems.extend(found)
            if item is not None:
                out.append(item)
    return out, problems


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Unique problems in file, then line order (stable otherwise)."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.file, p.line or 0))
