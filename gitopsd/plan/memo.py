"""Comparisons found in sync, remembered by a digest of everything they compared.

A steady daemon pass compares every task definition and service with exactly
the inputs of the pass before: the same rendered spec, the same cached
revision, the same live service. Normalising both sides and diffing them is
most of a no-op pass's own CPU (about a millisecond a service, against some
tens of microseconds to serialise the inputs), so a comparison that found no
difference is remembered under a digest of its inputs, together with the spec
it produced (the manifest with ignored places kept from live), and the next
identical comparison is answered from here.

Only "in sync" is remembered: a comparison with differences is always made in
full, so what a plan reports and writes never comes from this memo. The key
covers every input the caller names (desired and live documents, ignore
patterns, ignored tag keys, ...); the normalisation rules are constant for
the life of the process. Documents are serialised as they are, key order
included, so equal text means equal content (a reordered document only
misses). Non-JSON leaves (datetimes in live documents) are serialised with
their type. The stored spec is JSON text, decoded on each hit, so a caller
never shares or changes the remembered copy; a spec that does not survive
JSON unchanged (a tuple, say) is not remembered.

The memo is bounded (least recently used go first) and thread-safe.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

#: Entries kept by default: two comparisons a service, for 20,000 services.
MAX_ENTRIES = 40_000


def _tagged(value: object) -> str:
    """A non-JSON leaf as text that names its type (never read back)."""
    return f"\x00{type(value).__qualname__}\x00{value!r}"


class ComparisonMemo:
    """In-sync comparisons: a digest of their inputs -> the spec they produced."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, str] = OrderedDict()
        self._lock = threading.Lock()
        #: Whether anything was remembered since the last :meth:`entries` or :meth:`load`.
        self.dirty = False
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(*parts: Any) -> bytes | None:
        """The digest of ``parts``; None when they cannot be serialised (not remembered)."""
        try:
            text = json.dumps(parts, separators=(",", ":"), default=_tagged, allow_nan=False)
        except (TypeError, ValueError):
            return None
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20).digest()

    def get(self, key: bytes | None) -> dict[str, Any] | None:
        """A fresh copy of the spec remembered under ``key``, or None."""
        if key is None:
            return None
        with self._lock:
            text = self._entries.get(key)
            if text is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        try:
            found = json.loads(text)
        except ValueError:
            found = None
        if not isinstance(found, dict):  # a damaged entry (from a file): forgotten
            with self._lock:
                self._entries.pop(key, None)
            return None
        return found

    def put(self, key: bytes | None, spec: dict[str, Any]) -> None:
        """Remember that the comparison ``key`` found no difference and produced ``spec``."""
        if key is None:
            return
        try:
            text = json.dumps(spec, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            return
        if json.loads(text) != spec:  # tuples, non-string keys: not plain JSON
            return
        with self._lock:
            self._entries[key] = text
            self._entries.move_to_end(key)
            self.dirty = True
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.dirty = True

    # -- persistence (by the owner of a file: gitopsd.backends.ecs.tdcache) -----------------

    def entries(self) -> list[list[str]]:
        """Every entry as ``[hex digest, spec text]``, least recently used first."""
        with self._lock:
            self.dirty = False
            return [[key.hex(), text] for key, text in self._entries.items()]

    def load(self, entries: object) -> int:
        """Add ``entries`` (as :meth:`entries` gives them) not known already; how many.
        Anything malformed is skipped."""
        if not isinstance(entries, list):
            return 0
        added = 0
        with self._lock:
            for entry in reversed(entries):  # most recently used first: they are kept
                if len(self._entries) >= self.max_entries:
                    break
                try:
                    hex_key, text = entry
                    key = bytes.fromhex(hex_key)
                except (TypeError, ValueError):
                    continue
                if not isinstance(text, str) or key in self._entries:
                    continue
                self._entries[key] = text
                self._entries.move_to_end(key, last=False)
                added += 1
        return added
