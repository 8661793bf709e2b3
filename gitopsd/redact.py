"""One mechanism that hides secret values wherever gitopsd writes something down.

Secrets reach gitopsd from many places: Git tokens and webhook secrets read
from the environment or files, credentials inside a source URL, values of
container environment entries and ``vars`` marked secret, ECS ``secrets``
references, notifier URLs that embed a token. Each place *registers* the
value here once (:func:`register`) when it reads it; every output then goes
through :func:`redact` or :func:`redact_obj` at its sink: the log renderer
(:mod:`gitopsd.telemetry.logs`), the span exporter
(:mod:`gitopsd.telemetry.tracing`), the event bus feeding alerts
(:mod:`gitopsd.plugins`), the command output (:mod:`gitopsd.output`) and the
HTTP status API. No output keeps its own filter list.

Besides registered values, two shapes are always masked: the password (or the
lone user name, which is often a token) in ``scheme://user:password@host``
URLs, and ``Bearer``/``token`` authorisation values.

A value that replaces a secret, or that a secret replaces, in the same field is
the same secret's other version (a rotated password whose old value is only
seen live, a value another writer set): :func:`register_counterparts`
registers it when a change is shown, so both sides of the change are masked,
there and in every later output.

Values shorter than :data:`MIN_LENGTH` characters are not registered: masking
"on" or "1" everywhere would make every output unreadable and such a value
protects nothing.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
MIN_LENGTH = 4

_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@\s:?#]+)(?::(?P<password>[^/@\s?#]*))?@"
)
_AUTH_HEADER = re.compile(r"(?i)\b(?P<kind>bearer|token|basic)\s+(?P<value>[A-Za-z0-9._~+/=-]{8,})")


def _mask_url(match: re.Match[str]) -> str:
    scheme, user = match.group("scheme"), match.group("user")
    if user == MASK:
        return match.group(0)
    if match.group("password") is not None:
        return f"{scheme}{user}:{MASK}@"
    if scheme.lower().startswith(("http", "https")):
        return f"{scheme}{MASK}@"  # a lone user name over HTTP(S) is usually a token
    return match.group(0)  # ssh://git@host: a user name, not a secret


class Redactor:
    """The registered secret values, and the replacement of them in text and data.

    Thread-safe: sources register from worker threads, sinks redact from any thread.
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def register(self, value: object) -> None:
        """Treat ``value`` (a str; others are ignored) as secret from now on."""
        if not isinstance(value, str):
            return
        value = value.strip()
        if len(value) < MIN_LENGTH or value == MASK:
            return
        with self._lock:
            if value in self._values:
                return
            self._values.add(value)
            # Longest first, so a secret that contains another is masked whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def register_all(self, values: Iterable[object]) -> None:
        for value in values:
            self.register(value)

    def forget_all(self) -> None:
        """Drop every registered value (tests; a reload re-registers what is still secret)."""
        with self._lock:
            self._values.clear()
            self._pattern = None

    @property
    def count(self) -> int:
        return len(self._values)

    def redact(self, text: str) -> str:
        """``text`` with every registered value, URL credential and auth token masked."""
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        if "@" in text:
            text = _URL_CREDENTIALS.sub(_mask_url, text)
        if " " in text:
            text = _AUTH_HEADER.sub(lambda m: f"{m.group('kind')} {MASK}", text)
        return text

    def sensitive(self, text: str) -> bool:
        """Whether ``text`` holds anything :meth:`redact` masks."""
        return self.redact(text) != text

    def register_counterparts(self, before: Any, after: Any) -> None:
        """Register each string of one side of a change whose counterpart on the other side
        is sensitive. Mappings are compared key by key, lists of ``{"name": ...}`` entries
        by name, other lists of equal length item by item."""
        if isinstance(before, str) and isinstance(after, str):
            if before != after:
                if self.sensitive(after):
                    self.register(before)
                elif self.sensitive(before):
                    self.register(after)
            return
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            for key in before.keys() & after.keys():
                self.register_counterparts(before[key], after[key])
            return
        if isinstance(before, list | tuple) and isinstance(after, list | tuple):
            old, new = _by_name(before), _by_name(after)
            if old is not None and new is not None:
                for name in old.keys() & new.keys():
                    self.register_counterparts(old[name], new[name])
            elif len(before) == len(after):
                for x, y in zip(before, after, strict=True):
                    self.register_counterparts(x, y)

    def redact_obj(self, obj: Any) -> Any:
        """A copy of JSON-like data with every string redacted (mapping keys too)."""
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, Mapping):
            return {
                (self.redact(k) if isinstance(k, str) else k): self.redact_obj(v)
                for k, v in obj.items()
            }
        if isinstance(obj, list | tuple):
            items = [self.redact_obj(v) for v in obj]
            return tuple(items) if isinstance(obj, tuple) else items
        return obj


def _by_name(items: Any) -> dict[str, Any] | None:
    """``{name: item}`` when every item is a mapping with a string ``name``, else None."""
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            return None
        out[item["name"]] = item
    return out


#: The process's redactor: what every sink uses.
REDACTOR = Redactor()


def register(value: object) -> None:
    """Treat ``value`` as secret in every output from now on."""
    REDACTOR.register(value)


def redact(text: str) -> str:
    return REDACTOR.redact(text)


def redact_obj(obj: Any) -> Any:
    return REDACTOR.redact_obj(obj)


def register_counterparts(before: Any, after: Any) -> None:
    """Both sides of one change: what a secret replaces, or what replaces it, is secret too."""
    REDACTOR.register_counterparts(before, after)
