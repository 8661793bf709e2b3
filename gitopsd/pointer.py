"""RFC 6901 JSON pointers: the one way gitopsd names a place inside a document.

Manifest origins (``file:line`` per value), validation problems, plan changes
and the user's ignore list all address values by JSON pointer
(``/containerDefinitions/0/image``). The manifest loader and the plan diff
each used to carry their own copy of these helpers, which differed in small
ways (tokens as a list or a tuple, relative pointers rejected or not); this
module is the single implementation both sides share, so a pointer written by
one is always read the same way by the other.

Tokens are raw (unescaped) strings; a pointer is their escaped concatenation,
``""`` being the whole document. :data:`WILDCARD` is gitopsd's one extension,
used only in patterns (ignore lists, normalisation rules).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: The token that matches any one key or index in a pointer pattern.
WILDCARD = "*"

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def escape_token(token: str | int) -> str:
    """One reference token escaped for a pointer: ``~`` -> ``~0``, then ``/`` -> ``~1``."""
    return str(token).replace("~", "~0").replace("/", "~1")


def unescape_token(token: str) -> str:
    """The raw token of an escaped one: ``~1`` -> ``/``, then ``~0`` -> ``~``."""
    return token.replace("~1", "/").replace("~0", "~")


def join_pointer(tokens: Iterable[str | int]) -> str:
    """The pointer of a path given as raw tokens; ``()`` is ``""`` (the whole document)."""
    return "".join("/" + escape_token(t) for t in tokens)


def child_pointer(pointer: str, token: str | int) -> str:
    """The pointer one level below ``pointer``: ``child_pointer("/a", "b/c")`` -> ``"/a/b~1c"``."""
    return f"{pointer}/{escape_token(token)}"


def split_pointer(pointer: str) -> tuple[str, ...]:
    """The raw tokens of ``pointer``; ``""`` (the whole document) is ``()``."""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise ValueError(f"{pointer!r} is not a JSON pointer; it must start with '/'")
    return tuple(unescape_token(t) for t in pointer[1:].split("/"))


def parent_pointer(pointer: str) -> str:
    """The pointer one level above ``pointer`` (``"/a/b"`` -> ``"/a"``, ``"/a"`` -> ``""``)."""
    if not pointer.startswith("/"):
        raise ValueError(f"{pointer!r} has no parent; it must start with '/'")
    return pointer[: pointer.rfind("/")]


def is_below(pointer: str, ancestor: str) -> bool:
    """Whether ``pointer`` is ``ancestor`` or inside it (``"/ab"`` is not inside ``"/a"``)."""
    return pointer == ancestor or pointer.startswith(ancestor + "/")


def value_at(document: Any, pointer: str, default: Any = None) -> Any:
    """The value ``pointer`` names in ``document``, or ``default`` when there is none."""
    node = document
    for token in split_pointer(pointer):
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return default
    return node


def display_path(pointer: str) -> str:
    """``pointer`` as users write field paths: ``containerDefinitions[0].image``."""
    out = ""
    for token in split_pointer(pointer):
        if token.isdigit():
            out += f"[{token}]"
        elif _IDENT.match(token):
            out += f".{token}" if out else token
        else:
            out += f"[{json.dumps(token)}]"
    return out
