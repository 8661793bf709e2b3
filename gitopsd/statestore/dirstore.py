"""The state store as files under the state directory (``[state] backend = "dir"``, the default).

Right for a host (systemd's ``StateDirectory``) or any disk that outlives the
process. Each document is one file, ``<state_dir>/store/<namespace>/<key>.json``
(names percent-encoded), holding ``{"version": N, "value": {...}}``. Writes are
atomic (write, fsync, rename) and made in a worker thread, off the event loop.
A conditional write holds an exclusive ``flock`` on ``<namespace>/.lock`` from
the version check to the rename, so two processes sharing the directory never
overwrite each other (the kernel drops the lock if its holder dies).

Backup: copy the directory (``store/`` alone holds these documents). See
docs/state.md.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import anyio.to_thread
import structlog

from gitopsd.state import write_json_atomic
from gitopsd.statestore import (
    Entry,
    StateConflict,
    StateRejected,
    StateUnavailable,
    check_names,
    serialise,
)

log = structlog.get_logger(__name__)

_SUFFIX = ".json"
_PERMANENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR})


class DirStore:
    """Documents as files under ``root`` (``<state_dir>/store``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    # -- the StateStore protocol (each call runs in a worker thread) -------------------

    async def get(self, namespace: str, key: str) -> Entry | None:
        check_names(namespace, key)
        return await anyio.to_thread.run_sync(self._guarded, self._read, self._path(namespace, key))

    async def put(self, namespace: str, key: str, value: Mapping[str, Any], *, expect: int) -> int:
        check_names(namespace, key)
        text = serialise(namespace, key, value)
        return await anyio.to_thread.run_sync(
            self._guarded, self._put, namespace, key, text, expect
        )

    async def delete(self, namespace: str, key: str, *, expect: int | None = None) -> None:
        check_names(namespace, key)
        await anyio.to_thread.run_sync(self._guarded, self._delete, namespace, key, expect)

    async def list(self, namespace: str) -> dict[str, Entry]:
        check_names(namespace, "-")
        return await anyio.to_thread.run_sync(self._guarded, self._list, namespace)

    async def aclose(self) -> None:
        """Nothing to release (the same shape as the other stores)."""

    # -- files --------------------------------------------------------------------------

    def _dir(self, namespace: str) -> Path:
        return self.root / quote(namespace, safe="")

    def _path(self, namespace: str, key: str) -> Path:
        return self._dir(namespace) / (quote(key, safe="") + _SUFFIX)

    def _guarded(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except OSError as exc:
            where = exc.filename or self.root
            text = f"state store {where}: {exc.strerror or exc}"
            if exc.errno in _PERMANENT_ERRNOS:
                raise StateRejected(
                    f"{text}: check that [daemon].state_dir exists and is writable by gitopsd's "
                    'user (or use [state] backend = "dynamodb", see docs/state.md)'
                ) from None
            raise StateUnavailable(text) from None

    @staticmethod
    def _read(path: Path) -> Entry | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        value = data.get("value") if isinstance(data, dict) else None
        version = data.get("version") if isinstance(data, dict) else None
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            version = 0
        if isinstance(value, dict) and version:
            return Entry(value, version)
        log.warning(
            "state.damaged", path=str(path), hint="read as empty; the next write replaces it"
        )
        return Entry({}, version, damaged=True)

    @contextmanager
    def _locked(self, namespace: str) -> Iterator[None]:
        directory = self._dir(namespace)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for a read and a rename: never long
            yield
        finally:
            os.close(fd)

    def _put(self, namespace: str, key: str, text: str, expect: int) -> int:
        path = self._path(namespace, key)
        with self._locked(namespace):
            current = self._read(path)
            version = current.version if current is not None else 0
            if version != expect:
                raise StateConflict(namespace, key, expect)
            new = expect + 1
            write_json_atomic(path, f'{{"version": {new}, "value": {text}}}\n')
        return new

    def _delete(self, namespace: str, key: str, expect: int | None) -> None:
        path = self._path(namespace, key)
        with self._locked(namespace):
            current = self._read(path)
            if current is None:
                return
            if expect is not None and current.version != expect:
                raise StateConflict(namespace, key, expect)
            path.unlink(missing_ok=True)

    def _list(self, namespace: str) -> dict[str, Entry]:
        directory = self._dir(namespace)
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return {}
        out = {}
        for name in names:
            if name.endswith(_SUFFIX):
                entry = self._read(directory / name)
                if entry is not None:
                    out[unquote(name.removesuffix(_SUFFIX))] = entry
        return out
